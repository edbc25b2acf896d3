//! Adam (L2 weight decay added to the gradient, as `torch.optim.Adam` with
//! `amsgrad=False`) and AdamW (decoupled weight decay, as `torch.optim.AdamW`): their
//! hyper-parameters and their two moment averages.

use super::lerp;
use crate::Float;

/// Adam or AdamW and their moment averages.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Adam<T> {
    pub(super) lr: f64,
    pub(super) beta1: f64,
    pub(super) beta2: f64,
    pub(super) eps: f64,
    pub(super) weight_decay: f64,
    /// AdamW: the decay shrinks the parameters instead of adding to the gradient.
    pub(super) decoupled: bool,
    /// First-moment average.
    pub(super) exp_avg: Vec<T>,
    /// Second-moment average.
    pub(super) exp_avg_sq: Vec<T>,
}

impl<T: Float> Adam<T> {
    /// Update number `t` (from 1). Lengths already checked.
    #[inline(always)]
    pub(super) fn step(&mut self, t: u64, params: &mut [T], grads: &mut [T]) {
        let one = T::cast(1.0);
        let (lr, beta1, beta2) = (self.lr, self.beta1, self.beta2);
        let decoupled = self.decoupled;
        let l2 = !decoupled && self.weight_decay != 0.0;
        let wd = T::cast(self.weight_decay);
        let shrink = T::cast(1.0 - lr * self.weight_decay);
        let w1 = T::cast(1.0 - beta1);
        let w1_small = w1 < T::cast(0.5) && w1 > T::cast(-0.5);
        let w1_minus_1 = w1 - one;
        let b2 = T::cast(beta2);
        let c2 = T::cast(1.0 - beta2);
        let tf = t as f64;
        let bias_correction1 = 1.0 - beta1.powf(tf);
        let bias_correction2 = 1.0 - beta2.powf(tf);
        let neg_step_size = T::cast(-(lr / bias_correction1));
        let bc2_sqrt = T::cast(bias_correction2.sqrt());
        let eps = T::cast(self.eps);
        let it = params
            .iter_mut()
            .zip(grads.iter_mut())
            .zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq.iter_mut()));
        for ((p, g), (m, v)) in it {
            if decoupled {
                *p *= shrink; // param.mul_(1 - lr * weight_decay)
            } else if l2 {
                *g = p.fma(wd, *g); // grad.add(param, alpha=weight_decay)
            }
            let g = *g;
            *m = lerp(*m, g, w1, w1_small, w1_minus_1); // exp_avg.lerp_(grad, 1 - beta1)
            *v = *v * b2 + c2 * g * g; // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p += neg_step_size * *m / denom; // param.addcdiv_(m, denom, -step_size)
        }
    }
}
