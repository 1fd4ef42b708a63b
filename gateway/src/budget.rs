//! A global budget for request bodies held in memory: a body is buffered (to read and
//! rewrite its `model`) only within it, so many large uploads at once cannot exhaust the
//! process.
//!
//! * Bodies of at most [`SMALL_BODY`] bytes (a chat request, almost always) do not count:
//!   they stay served when large uploads fill the budget.
//! * A larger body takes its share before it is read: its whole `Content-Length` at once
//!   when it has one, else chunk by chunk as it arrives. The share is given back when the
//!   request is done (its answer's head is sent: the body is not needed after).
//! * When the budget cannot cover a body, the answer is 503 with `Retry-After`; nothing
//!   waits (the request path does not queue).
//!
//! The budget is 4 × the body limit (`Options::max_body`): 256 MiB with the default 64 MiB.
//! Every body is buffered: the gateway reads `model` from it and rewrites it when the
//! deployment's model differs, and it must be whole to be sent again on a retry.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Bodies at most this long (64 KiB) are not counted.
pub const SMALL_BODY: usize = 64 << 10;

/// How many bytes of request bodies may be buffered at once.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes of the budget held by one request; given back on drop.
#[derive(Debug, Default)]
pub struct Held(Vec<OwnedSemaphorePermit>);

impl Held {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|p| p.num_permits()).sum()
    }
}

/// The budget cannot cover a body now.
#[derive(Debug, Clone, Copy)]
pub struct Full;

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Takes `n` more bytes into `held`, or fails at once when they are not free.
    pub fn take(&self, held: &mut Held, n: usize) -> Result<(), Full> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| Full)?;
        match Arc::clone(&self.bytes).try_acquire_many_owned(n) {
            Ok(p) => {
                held.0.push(p);
                Ok(())
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(Full),
        }
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the body limit.
    TooLarge,
    /// Unreadable: a bad chunk size or a truncated body (the client's fault).
    Malformed,
    /// The budget is full now: answer 503 with `Retry-After`.
    Busy,
}

/// Reads a request body of at most `max_body` bytes within `budget` (see the
/// [module docs](self)); the returned [`Held`] keeps its share until dropped.
///
/// A body that arrives as one frame (a small request, almost always) is returned as that
/// frame, uncopied.
pub async fn read_body<B>(
    body: B,
    headers: &http::HeaderMap,
    max_body: usize,
    budget: &BodyBudget,
) -> Result<(bytes::Bytes, Held), ReadError>
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    use http_body_util::BodyExt as _;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut held = Held::default();
    if let Some(n) = declared {
        if n > max_body {
            return Err(ReadError::TooLarge);
        }
        if n > SMALL_BODY {
            budget.take(&mut held, n).map_err(|Full| ReadError::Busy)?;
        }
    }
    let mut body = std::pin::pin!(body);
    // The first frame as it came; copied into `buf` only when a second one follows.
    let mut first: Option<bytes::Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ReadError::Malformed)?.into_data() else {
            continue;
        };
        if len + data.len() > max_body {
            return Err(ReadError::TooLarge);
        }
        len += data.len();
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                buf.reserve(declared.unwrap_or(0).min(max_body).max(len));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
        // Counted as it comes once past the small size, beyond what was declared.
        let counted = held.bytes();
        if len > SMALL_BODY && len > counted {
            budget
                .take(&mut held, len - counted)
                .map_err(|Full| ReadError::Busy)?;
        }
    }
    let body = match first {
        Some(f) => f,
        None => buf.freeze(),
    };
    Ok((body, held))
}
