//! Async adapter for embedding: any `Stream` of events in, a `Stream` of predictions out.
//!
//! Each event is processed at once by a [`Pipeline`]. With
//! [`PipelineConfig::background`] set, training runs on its own thread and the stream only
//! pays for prediction (microseconds), so it can sit inside a tokio task; inline training
//! runs the update on the polling task every `k` events.

use crate::detect::pipeline::{OutputRecord, Pipeline, PipelineConfig};
use crate::event::Event;
use crate::Result;
use std::borrow::Borrow;
use tokio_stream::{Stream, StreamExt};

/// Maps a stream of events to a stream of output records (one per event, or the error that
/// rejected the event: a wrong arity or a non-finite value; the stream goes on after it).
/// The items are anything that borrows as an [`Event`]: owned events, or a source's
/// [`Pooled`](crate::io::source::Pooled) events, which go back to their pool once processed.
/// Records are cloned out of the pipeline's reused buffer, one small allocation per event.
///
/// # Errors
/// [`crate::Error::Config`] if the configuration is invalid.
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::detect::pipeline::PipelineConfig;
/// use tokio_stream::StreamExt;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let events = tokio_stream::iter((0..100).map(|t| {
///     let mut e = Event::new();
///     e.values.push((t as f64 * 0.3).sin());
///     e
/// }));
/// let mut out = Box::pin(tbptt::service::stream::predictions(events, PipelineConfig::default()).unwrap());
/// let mut n = 0;
/// while let Some(rec) = out.next().await {
///     assert_eq!(rec.unwrap().index, n);
///     n += 1;
/// }
/// assert_eq!(n, 100);
/// # });
/// ```
pub fn predictions<S>(
    events: S,
    config: PipelineConfig,
) -> Result<impl Stream<Item = Result<OutputRecord>>>
where
    S: Stream,
    S::Item: Borrow<Event>,
{
    let mut pipeline = Pipeline::new(config)?;
    Ok(events.map(move |ev| pipeline.process(ev.borrow()).cloned()))
}
