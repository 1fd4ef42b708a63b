//! The response future of [`HealthEndpoints`](super::HealthEndpoints): ready at once for
//! the endpoints that answer from the snapshot, so they never wait behind anything.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

use super::wire::{self, Resp};

/// The response without its body, for `HEAD`.
pub(super) fn strip(resp: Resp, head: bool) -> Resp {
    if head {
        resp.map(|_| Full::new(Bytes::new()))
    } else {
        resp
    }
}

/// The response future of [`HealthEndpoints`](super::HealthEndpoints): ready at once for the endpoints that
/// answer from the snapshot, a boxed future for on-demand `/health` and service checks.
pub struct ResponseFuture {
    pub(super) kind: Kind,
}

pub(super) enum Kind {
    Ready(Option<Resp>),
    Pending {
        fut: Pin<Box<dyn Future<Output = Resp> + Send>>,
        head: bool,
    },
}

impl ResponseFuture {
    pub(super) fn ready(resp: Resp) -> Self {
        Self {
            kind: Kind::Ready(Some(resp)),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Ready(_) => "ready",
            Kind::Pending { .. } => "pending",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Ready(resp) => Poll::Ready(Ok(resp.take().unwrap_or_else(|| {
                wire::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "response future polled after completion",
                )
            }))),
            Kind::Pending { fut, head } => fut.as_mut().poll(cx).map(|r| Ok(strip(r, *head))),
        }
    }
}
