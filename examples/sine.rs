//! Learns a noisy sine stream online: every event is forecast, then learned from.
//! Run: `cargo run --release --example sine`
use tbptt::LearnerConfig;

fn main() -> Result<(), tbptt::Error> {
    let mut learner = LearnerConfig::default().build::<f32>()?; // GRU, H = 32, T = 32, k = 8
    let (mut sum, mut naive, mut last) = (0.0, 0.0, 0.0);
    for t in 0..20_000u32 {
        let noise = ((t.wrapping_mul(2_654_435_761) >> 8) as f32 / 16_777_216.0 - 0.5) * 0.1;
        let x = (t as f32 * 0.07).sin() + 0.5 * (t as f32 * 0.19).sin() + noise;
        let p = learner.step(&[x])?; // scores the last forecast, forecasts the next event, trains
        sum += p.error.unwrap_or(0.0);
        naive += (x - last) * (x - last);
        last = x;
        if (t + 1) % 4_000 == 0 {
            println!(
                "events {:>6}  forecast MSE {:.5}  repeat-last MSE {:.5}  updates {}",
                t + 1,
                sum / 4e3,
                naive / 4e3,
                learner.updates()
            );
            (sum, naive) = (0.0, 0.0);
        }
    }
    Ok(())
}
