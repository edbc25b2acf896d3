//! RMSprop, as `torch.optim.RMSprop`: its hyper-parameters and its up to three state
//! buffers.

use super::lerp;
use crate::Float;

/// RMSprop and its averages.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct RmsProp<T> {
    pub(super) lr: f64,
    pub(super) alpha: f64,
    pub(super) eps: f64,
    pub(super) momentum: f64,
    pub(super) centered: bool,
    pub(super) weight_decay: f64,
    /// Squared-gradient average.
    pub(super) square_avg: Vec<T>,
    /// Gradient average (centered only; empty otherwise).
    pub(super) grad_avg: Vec<T>,
    /// Momentum buffer (with momentum only; empty otherwise).
    pub(super) momentum_buffer: Vec<T>,
}

impl<T: Float> RmsProp<T> {
    /// Update number `t` (from 1; RMSprop does not use it). Lengths already checked.
    #[inline(always)]
    pub(super) fn step(&mut self, params: &mut [T], grads: &mut [T]) {
        let one = T::cast(1.0);
        let decay = self.weight_decay != 0.0;
        let wd = T::cast(self.weight_decay);
        let a = T::cast(self.alpha);
        let c = T::cast(1.0 - self.alpha);
        let c_small = c < T::cast(0.5) && c > T::cast(-0.5);
        let c_minus_1 = c - one;
        let eps = T::cast(self.eps);
        let neg_lr = T::cast(-self.lr);
        let mom = T::cast(self.momentum);
        let (use_momentum, centered) = (self.momentum > 0.0, self.centered);
        // The optional buffers are empty when unused, so their iterators are only advanced
        // when the variant uses them.
        let mut grad_avg = self.grad_avg.iter_mut();
        let mut momentum_buffer = self.momentum_buffer.iter_mut();
        let it = params
            .iter_mut()
            .zip(grads.iter_mut())
            .zip(self.square_avg.iter_mut());
        for ((p, g), sq) in it {
            if decay {
                *g = p.fma(wd, *g);
            }
            let g = *g;
            *sq = *sq * a + c * g * g; // square_avg.mul_(alpha).addcmul_(g, g, 1 - alpha)
            let root = match grad_avg.next() {
                Some(ga) if centered => {
                    *ga = lerp(*ga, g, c, c_small, c_minus_1); // grad_avg.lerp_(g, 1 - alpha)
                    (*sq - *ga * *ga).sqrt() // square_avg.addcmul(ga, ga, value=-1).sqrt_()
                }
                _ => sq.sqrt(),
            };
            let avg = root + eps;
            match momentum_buffer.next() {
                Some(buf) if use_momentum => {
                    *buf = *buf * mom + g / avg; // buf.mul_(momentum).addcdiv_(g, avg)
                    *p = buf.fma(neg_lr, *p); // param.add_(buf, alpha=-lr)
                }
                _ => *p += neg_lr * g / avg, // param.addcdiv_(g, avg, value=-lr)
            }
        }
    }
}
