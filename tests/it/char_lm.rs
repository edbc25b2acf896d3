//! The character-level language model of `examples/char_lm.rs`, small: its bits per character
//! must fall below the adaptive unigram baseline's within a bounded number of characters.

use tbptt::{CellKind, LearnerConfig, Loss, OptimizerConfig, Targets};

#[test]
fn char_model_beats_the_unigram_baseline_within_4000_characters() {
    let text = std::fs::read(super::util::data("tinyshakespeare_100k.txt")).unwrap();
    let config = LearnerConfig {
        cell: CellKind::Gru,
        d_input: 256,
        d_hidden: 32,
        d_target: Some(256),
        targets: Targets::Explicit,
        trainer: tbptt::TrainerConfig {
            truncation: 16.into(),
            every: 8,
            loss: Loss::CrossEntropy,
            optimizer: OptimizerConfig::adam(1e-2),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = config.build::<f32>().unwrap();
    let (mut x, mut y) = ([0.0f32; 256], [0.0f32; 256]);
    let mut counts = [0u64; 256];
    // Bits over blocks of 2000 characters: (model, unigram).
    let (block, mut model, mut unigram) = (2000usize, 0.0f64, 0.0f64);
    let (mut beaten_at, mut last) = (None, (0.0, 0.0));
    for (n, w) in text[..20_001].windows(2).enumerate() {
        let (p, c) = (w[0] as usize, w[1] as usize);
        if n == 0 {
            counts[p] += 1;
        }
        let p_uni = (counts[c] as f64 + 0.5) / ((n + 1) as f64 + 128.0);
        counts[c] += 1;
        x[p] = 1.0;
        y[c] = 1.0;
        let nats = learner.step_supervised(&x, &y).unwrap().error.unwrap() as f64;
        x[p] = 0.0;
        y[c] = 0.0;
        model += nats / std::f64::consts::LN_2;
        unigram -= p_uni.log2();
        if (n + 1) % block == 0 {
            let (m, u) = (model / block as f64, unigram / block as f64);
            eprintln!("chars {:>6}: model {m:.3} bpc, unigram {u:.3} bpc", n + 1);
            if m < u - 0.1 && beaten_at.is_none() {
                beaten_at = Some(n + 1);
            }
            last = (m, u);
            (model, unigram) = (0.0, 0.0);
        }
    }
    let at = beaten_at.expect("the model never beat the unigram baseline by 0.1 bpc");
    assert!(
        at <= 4000,
        "the model beat the unigram baseline only after {at} characters"
    );
    assert!(
        last.0 < last.1 - 1.0,
        "characters 18,000-20,000: model {:.3} bpc, unigram {:.3} bpc",
        last.0,
        last.1
    );
}
