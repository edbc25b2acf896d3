//! SGD with optional (Nesterov) momentum, as `torch.optim.SGD` (dampening 0): its
//! hyper-parameters and its one state buffer.

use crate::Float;

/// SGD and its momentum buffer (empty when momentum is 0).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sgd<T> {
    pub(super) lr: f64,
    pub(super) momentum: f64,
    pub(super) nesterov: bool,
    pub(super) weight_decay: f64,
    pub(super) momentum_buffer: Vec<T>,
}

impl<T: Float> Sgd<T> {
    /// Update number `t` (from 1). Lengths already checked.
    #[inline(always)]
    pub(super) fn step(&mut self, t: u64, params: &mut [T], grads: &mut [T]) {
        let decay = self.weight_decay != 0.0;
        let wd = T::cast(self.weight_decay);
        let neg_lr = T::cast(-self.lr);
        if self.momentum != 0.0 {
            let mom = T::cast(self.momentum);
            let nesterov = self.nesterov;
            // PyTorch's buffer is created (a copy of the gradient) at the first step.
            let first = t == 1;
            let it = params
                .iter_mut()
                .zip(grads.iter_mut())
                .zip(self.momentum_buffer.iter_mut());
            for ((p, g), buf) in it {
                if decay {
                    *g = p.fma(wd, *g); // grad.add(param, alpha=wd)
                }
                *buf = if first { *g } else { *buf * mom + *g };
                let d = if nesterov { buf.fma(mom, *g) } else { *buf };
                *p = d.fma(neg_lr, *p); // param.add_(grad, alpha=-lr)
            }
        } else {
            for (p, g) in params.iter_mut().zip(grads.iter_mut()) {
                if decay {
                    *g = p.fma(wd, *g);
                }
                *p = g.fma(neg_lr, *p);
            }
        }
    }
}
