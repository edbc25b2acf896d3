//! The background trainer thread of a [`Learner`](crate::Learner): windows go to it over a
//! bounded channel, published weights come back; prediction never waits for it.

use crate::nn::model::Model;
use crate::train::ring::Ring;
use crate::train::trainer::Trainer;
use crate::train::truncation::TruncationReport;
use crate::{Error, Float, Result};

/// A window handed to the trainer thread: inputs, targets and the start state, for `len`
/// steps (the buffers hold up to the largest `T`).
pub(super) struct Job<T> {
    xs: Vec<T>,
    ys: Vec<T>,
    start: Vec<T>,
    len: usize,
}

/// Weights and counters the trainer thread publishes after each update.
pub(super) struct Published<T> {
    params: Vec<T>,
    updates: u64,
    rejected: u64,
    mean_loss: f64,
    truncation: TruncationReport,
}

/// Number of window buffers in flight (one being trained, one queued).
const JOBS: usize = 2;
/// Number of weight buffers circulating between the threads.
const WEIGHT_BUFFERS: usize = 3;

pub(crate) struct Background<T: Float> {
    jobs: Option<crossbeam_channel::Sender<Job<T>>>,
    free_jobs: crossbeam_channel::Receiver<Job<T>>,
    weights: crossbeam_channel::Receiver<Published<T>>,
    free_weights: crossbeam_channel::Sender<Vec<T>>,
    handle: Option<std::thread::JoinHandle<(Trainer<T>, Model<T>)>>,
    /// Configuration-only copy of the trainer, for `Clone` of the learner.
    pub(super) snapshot: Trainer<T>,
    pub(super) updates: u64,
    pub(super) rejected: u64,
    pub(super) mean_loss: f64,
    pub(super) truncation: TruncationReport,
}

impl<T: Float> Background<T> {
    pub(super) fn spawn(trainer: Trainer<T>, model: Model<T>) -> Result<Self> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job<T>>(JOBS);
        let (free_jobs_tx, free_jobs_rx) = crossbeam_channel::bounded::<Job<T>>(JOBS);
        let (weights_tx, weights_rx) = crossbeam_channel::bounded::<Published<T>>(WEIGHT_BUFFERS);
        let (free_w_tx, free_w_rx) = crossbeam_channel::bounded::<Vec<T>>(WEIGHT_BUFFERS);
        let t = trainer.config().max_window();
        let mc = *model.config();
        for _ in 0..JOBS {
            let job = Job {
                xs: vec![T::zero(); t * mc.d_input],
                ys: vec![T::zero(); t * mc.d_output],
                start: vec![T::zero(); mc.state_len()],
                len: t,
            };
            let _ = free_jobs_tx.send(job);
        }
        for _ in 0..WEIGHT_BUFFERS {
            let _ = free_w_tx.send(vec![T::zero(); mc.n_params()]);
        }
        let (updates, rejected, mean_loss, truncation) = (
            trainer.updates(),
            trainer.rejected(),
            trainer.mean_loss(),
            trainer.truncation(),
        );
        let snapshot = trainer.clone();
        let recycle = free_w_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("tbptt-trainer".into())
            .spawn(move || {
                let (mut trainer, mut model) = (trainer, model);
                for job in jobs_rx.iter() {
                    // A failed update (shape errors cannot happen: buffers are sized once)
                    // is counted by the trainer; the weights are published either way.
                    let (dx, dy) = (mc.d_input * job.len, mc.d_output * job.len);
                    let _ =
                        trainer.update_from(&mut model, &job.xs[..dx], &job.ys[..dy], &job.start);
                    let _ = free_jobs_tx.send(job);
                    if let Ok(mut buf) = free_w_rx.try_recv() {
                        buf.copy_from_slice(model.params());
                        let msg = Published {
                            params: buf,
                            updates: trainer.updates(),
                            rejected: trainer.rejected(),
                            mean_loss: trainer.mean_loss(),
                            truncation: trainer.truncation(),
                        };
                        if let Err(e) = weights_tx.try_send(msg) {
                            let _ = recycle.try_send(e.into_inner().params);
                        }
                    }
                }
                (trainer, model)
            });
        match spawned {
            Ok(handle) => Ok(Background {
                jobs: Some(jobs_tx),
                free_jobs: free_jobs_rx,
                weights: weights_rx,
                free_weights: free_w_tx,
                handle: Some(handle),
                snapshot,
                updates,
                rejected,
                mean_loss,
                truncation,
            }),
            Err(e) => Err(Error::Spawn(e.into())),
        }
    }

    /// Hands the newest window to the trainer; `false` if it is busy (the update is skipped),
    /// unless `wait`: then it waits for the trainer to free a window buffer.
    pub(super) fn submit(&mut self, ring: &Ring<T>, wait: bool) -> bool {
        let Some(jobs) = &self.jobs else { return false };
        let free = if wait {
            self.free_jobs.recv().map_err(|_| ())
        } else {
            self.free_jobs.try_recv().map_err(|_| ())
        };
        match free {
            Ok(mut job) => {
                let t = self.truncation.current;
                let start = ring.copy_newest_to(t, &mut job.xs, &mut job.ys);
                job.start.copy_from_slice(start);
                job.len = t;
                jobs.try_send(job).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Copies the newest published weights into `model` and recycles the buffers.
    pub(super) fn poll(&mut self, model: &mut Model<T>) {
        let mut newest: Option<Published<T>> = None;
        while let Ok(p) = self.weights.try_recv() {
            if let Some(old) = newest.replace(p) {
                let _ = self.free_weights.try_send(old.params);
            }
        }
        if let Some(p) = newest {
            // Lengths match by construction; a mismatch would leave the old weights.
            let _ = model.copy_params_from(&p.params);
            self.updates = p.updates;
            self.rejected = p.rejected;
            self.mean_loss = p.mean_loss;
            self.truncation = p.truncation;
            let _ = self.free_weights.try_send(p.params);
        }
    }

    /// Closes the job queue, waits for the thread and returns its trainer and weights. Once
    /// joined (or after a panic) it takes no more windows.
    pub(super) fn join(&mut self) -> Result<(Box<Trainer<T>>, Model<T>)> {
        self.jobs = None;
        let handle = self.handle.take();
        match handle.map(|h| h.join()) {
            Some(Ok((trainer, model))) => Ok((Box::new(trainer), model)),
            _ => Err(Error::TrainerPanicked),
        }
    }
}

impl<T: Float> Drop for Background<T> {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
