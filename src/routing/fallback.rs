//! Fallbacks to other routes: LiteLLM's `fallbacks`, `default_fallbacks`,
//! `context_window_fallbacks` and `content_policy_fallbacks`, as a tower layer stacked
//! *outside* [`RetryLayer`](crate::retry::RetryLayer) (or [`HealthRoutingLayer`](crate::HealthRoutingLayer)
//! when there is no retry layer).
//!
//! Retries go to another deployment of the same route; a fallback goes to another route.
//! When the request's group cannot answer (no deployment available, or the answer is a
//! failure once the retries below are spent), [`Fallback`] re-sends the request to each
//! fallback group in order, rewriting its [`ModelGroup`] extension (the forwarder puts the
//! chosen deployment's model in the body as usual), and returns the first answer that is
//! not a failure.
//!
//! | the group's answer | groups tried, in order |
//! |---|---|
//! | an error ([`NoDeploymentAvailable`](crate::NoDeploymentAvailable), [`UnknownRoute`](crate::UnknownRoute), a connection error), or a status that counts against a deployment (429, 408, 401, 404, 5xx) | `fallbacks[group]`, else `default_fallbacks` |
//! | a 400/413/422 whose body says the input is too long for the model | `context_window_fallbacks[group]`, else as above |
//! | a 400/413/422 whose body says a content policy rejected it | `content_policy_fallbacks[group]`, else as above |
//! | any other answer (2xx, 3xx, other 4xx) | none: it is returned |
//!
//! The fallback list is the *requested* group's; a fallback group's own fallbacks are not
//! followed (no loops). When every group fails, the caller gets the last failure.
//!
//! The response tells which group gave it and how many fallback groups were tried
//! (LiteLLM's `x-litellm-model-group` and `x-litellm-attempted-fallbacks` headers in a
//! gateway): its body's [`FallbackBody::served_by`], at no cost, or, with
//! [`FallbackLayer::with_response_extension`], a [`ServedBy`] response extension too (which
//! costs a response that has no extension yet its extension map: three small allocations).
//! The body also lends the inner body ([`FallbackBody::get_ref`]), so a
//! [`ResponseBody::selected_deployment`](crate::routing::ResponseBody::selected_deployment)
//! below still names the deployment that answered, a buffered body's included.
//!
//! The request body must be `Clone` (each group gets a clone), and the request must carry
//! its route as a [`ModelGroup`] extension (the default [`FromExtension`](crate::routing::FromExtension)
//! extractor); without one, the request passes through untouched. To tell a context-window
//! or content-policy rejection from another 400, the body of a 400/413/422 answer is read
//! (at most 64 KiB) when the group has fallbacks; the response then carries that buffered
//! body (and keeps the drained inner body, for [`FallbackBody::get_ref`]).
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_health_routing::{
//!     Config, Deployment, HealthRoutingLayer, ModelGroup, SelectedDeployment,
//!     routing::FallbackLayer,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_health_routing::BoxError> {
//! let cfg = Config::builder()
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").id("a").build())
//!     .deployment(Deployment::builder("backup", "openai/gpt-4o-mini").id("b").build())
//!     .fallbacks("gpt-4o", ["backup"])
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(&cfg))
//!     .layer(HealthRoutingLayer::new(cfg))
//!     .service_fn(|req: http::Request<String>| async move {
//!         // A forwarder whose `gpt-4o` upstream is down.
//!         let chosen = req.extensions().get::<SelectedDeployment>().unwrap();
//!         let status = if chosen.id().as_str() == "a" { 500 } else { 200 };
//!         let mut resp = http::Response::new(String::new());
//!         *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
//!         Ok::<_, std::convert::Infallible>(resp)
//!     });
//! let mut req = http::Request::new(String::new());
//! req.extensions_mut().insert(ModelGroup::new("gpt-4o"));
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.status(), 200);
//! let served = resp.body().served_by().unwrap();
//! assert_eq!((served.group().as_str(), served.attempted_fallbacks()), ("backup", 1));
//! // The body below names the deployment that answered.
//! let chosen = resp.body().get_ref().selected_deployment().unwrap();
//! assert_eq!(chosen.id().as_str(), "b");
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project::pin_project;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    BoxError,
    classify::{Class, Classify, DefaultClassifier},
    config::{Config, Fallbacks},
    deployment::ModelGroup,
};

/// Most bytes of a rejection's body read to classify it.
const CLASSIFY_LIMIT: usize = 64 * 1024;

/// Which group answered a request sent through [`Fallback`]: its response body's
/// [`FallbackBody::served_by`], and, with [`FallbackLayer::with_response_extension`], a
/// response extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedBy {
    group: ModelGroup,
    attempted_fallbacks: u32,
}

impl ServedBy {
    /// The group whose deployment gave the response (the requested one, or a fallback).
    pub fn group(&self) -> &ModelGroup {
        &self.group
    }

    /// How many fallback groups were tried (0: the requested group answered).
    pub fn attempted_fallbacks(&self) -> u32 {
        self.attempted_fallbacks
    }

    /// Whether a fallback group gave the response.
    pub fn is_fallback(&self) -> bool {
        self.attempted_fallbacks > 0
    }
}

/// Sends a failed request to its fallback groups; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct FallbackLayer {
    fallbacks: Arc<Fallbacks>,
    classifier: Arc<dyn Classify>,
    respond_with_served: bool,
}

impl FallbackLayer {
    /// A layer with `config`'s `router_settings` fallbacks (default: none, so it only
    /// names the group in the response body, see [`FallbackBody::served_by`]).
    pub fn new(config: &Config) -> Self {
        Self {
            fallbacks: Arc::new(config.router.fallbacks.clone()),
            classifier: config.classifier(),
            respond_with_served: false,
        }
    }

    /// A layer with these fallbacks and the default classifier.
    pub fn from_fallbacks(fallbacks: Fallbacks) -> Self {
        Self {
            fallbacks: Arc::new(fallbacks),
            classifier: Arc::new(DefaultClassifier::default()),
            respond_with_served: false,
        }
    }

    /// Also attaches the [`ServedBy`] to each response of a request with a
    /// [`ModelGroup`] as an extension, for code that reads it from `Response::extensions`
    /// (a `map_response` after other layers).
    ///
    /// Off by default, as the routing layer's
    /// [`HealthRoutingLayer::with_response_extension`](crate::HealthRoutingLayer::with_response_extension):
    /// it costs a response with no extension map yet three small allocations (the map and
    /// the entry). The response's body tells the same for free: [`FallbackBody::served_by`].
    pub fn with_response_extension(mut self) -> Self {
        self.respond_with_served = true;
        self
    }

    /// Leaves the [`ServedBy`] extension off the responses: the default (see
    /// [`with_response_extension`](Self::with_response_extension)).
    pub fn without_response_extension(mut self) -> Self {
        self.respond_with_served = false;
        self
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback {
            inner,
            fallbacks: Arc::clone(&self.fallbacks),
            classifier: Arc::clone(&self.classifier),
            respond_with_served: self.respond_with_served,
        }
    }
}

/// The service [`FallbackLayer`] builds.
#[derive(Clone, Debug)]
pub struct Fallback<S> {
    inner: S,
    fallbacks: Arc<Fallbacks>,
    classifier: Arc<dyn Classify>,
    /// Whether responses also carry [`ServedBy`] as an extension.
    respond_with_served: bool,
}

impl<S> Fallback<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What kind of failure an answer is, for choosing the fallback list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    General,
    ContextWindow,
    ContentPolicy,
}

impl Fallbacks {
    /// The groups to try after `group` failed this way.
    fn for_failure(&self, group: &str, failure: Failure) -> &[String] {
        let special = match failure {
            Failure::ContextWindow => self.context_window.get(group),
            Failure::ContentPolicy => self.content_policy.get(group),
            Failure::General => None,
        };
        special
            .or_else(|| self.general.get(group))
            .map_or(&self.default[..], |v| &v[..])
    }

    fn any_for(&self, group: &str) -> bool {
        !self.default.is_empty()
            || self.general.contains_key(group)
            || self.context_window.contains_key(group)
            || self.content_policy.contains_key(group)
    }
}

/// One group's answer, judged.
enum Answer<RB> {
    Done(Response<FallbackBody<RB>>),
    Failed(Failure, Result<Response<FallbackBody<RB>>, BoxError>),
}

/// The fallback list a class asks for; `None`: the answer stands (success, or the
/// caller's own fault that no other group would fix).
fn failure_of(class: Class) -> Option<Failure> {
    match class {
        Class::Success | Class::CallerFault | Class::Local => None,
        Class::ContextWindowExceeded => Some(Failure::ContextWindow),
        Class::ContentPolicy => Some(Failure::ContentPolicy),
        _ => Some(Failure::General),
    }
}

async fn judge<RB>(
    res: Result<Response<RB>, BoxError>,
    classify_body: bool,
    classifier: &dyn Classify,
) -> Result<Answer<RB>, BoxError>
where
    RB: Body,
    RB::Data: From<Bytes>,
    RB::Error: Into<BoxError>,
{
    let resp = match res {
        Err(e) => return Ok(Answer::Failed(Failure::General, Err(e))),
        Ok(r) => r,
    };
    let class = resp
        .extensions()
        .get::<Class>()
        .copied()
        .unwrap_or_else(|| classifier.classify_response(resp.status(), resp.headers(), None));
    if class == Class::CallerFault
        && classify_body
        && matches!(resp.status().as_u16(), 400 | 413 | 422)
    {
        // The body may say the rejection was for the context window or content policy. It
        // is read in place (boxed: it may not be `Unpin`) and kept, drained, for what it
        // tells about the answer (`get_ref`); a rejection's box is the only allocation.
        let (parts, body) = resp.into_parts();
        let mut drained = Box::pin(body);
        let bytes = http_body_util::Limited::new(drained.as_mut(), CLASSIFY_LIMIT)
            .collect()
            .await?
            .to_bytes();
        let class = classifier.classify_response(parts.status, &parts.headers, Some(&bytes));
        let resp = Response::from_parts(parts, FallbackBody::buffered(bytes, drained));
        return Ok(match failure_of(class) {
            Some(f @ (Failure::ContextWindow | Failure::ContentPolicy)) => {
                Answer::Failed(f, Ok(resp))
            }
            _ => Answer::Done(resp),
        });
    }
    Ok(match failure_of(class) {
        None => Answer::Done(resp.map(FallbackBody::inner)),
        Some(f) => Answer::Failed(f, Ok(resp.map(FallbackBody::inner))),
    })
}

/// Names `group` as the one that served `res` after `attempted` fallback groups: in the
/// body, and as an extension too when `extension`.
fn served<RB>(
    mut res: Result<Response<FallbackBody<RB>>, BoxError>,
    group: ModelGroup,
    attempted: u32,
    extension: bool,
) -> Result<Response<FallbackBody<RB>>, BoxError> {
    if let Ok(r) = &mut res {
        let served = ServedBy {
            group,
            attempted_fallbacks: attempted,
        };
        if extension {
            r.extensions_mut().insert(served.clone());
        }
        r.body_mut().served = Some(served);
    }
    res
}

impl<S, B, RB> Service<Request<B>> for Fallback<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Clone + Send + 'static,
    RB: Body + Send + 'static,
    RB::Data: From<Bytes> + Send,
    RB::Error: Into<BoxError>,
{
    type Response = Response<FallbackBody<RB>>;
    type Error = BoxError;
    type Future = FallbackFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A request without a group, or whose group has no fallback of any kind, is passed
        // through: no box, no clone of the stack below, no copy of the request.
        let group = match req.extensions().get::<ModelGroup>() {
            Some(g) if self.fallbacks.any_for(g.as_str()) => g.clone(),
            other => {
                let group = other.cloned();
                return FallbackFuture {
                    kind: Kind::Direct {
                        fut: self.inner.call(req),
                        group,
                        extension: self.respond_with_served,
                    },
                };
            }
        };
        // The ready service takes this request; a clone stays for the next poll_ready.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let fallbacks = Arc::clone(&self.fallbacks);
        let classifier = Arc::clone(&self.classifier);
        let extension = self.respond_with_served;
        let template = req.clone();
        let first = ready.call(req);
        let chain = Box::pin(async move {
            let res = first.await.map_err(Into::into);
            let (failure, mut last) = match judge(res, true, &*classifier).await? {
                Answer::Done(r) => return served(Ok(r), group, 0, extension),
                Answer::Failed(f, r) => (f, r),
            };
            let mut last_group = group.clone();
            let mut attempted = 0;
            for to in fallbacks.for_failure(group.as_str(), failure) {
                attempted += 1;
                let to = ModelGroup::new(to.as_str());
                tracing::debug!(from = %group.as_str(), to = %to.as_str(), "falling back");
                let mut req = template.clone();
                req.extensions_mut().insert(to.clone());
                let res = ready.clone().oneshot(req).await.map_err(Into::into);
                match judge(res, true, &*classifier).await? {
                    Answer::Done(r) => return served(Ok(r), to, attempted, extension),
                    Answer::Failed(_, r) => {
                        last = r;
                        last_group = to;
                    }
                }
            }
            served(last, last_group, attempted, extension)
        });
        FallbackFuture {
            kind: Kind::Chain(chain),
        }
    }
}

/// The boxed future of a request whose group has fallbacks.
type Chain<RB> = Pin<Box<dyn Future<Output = Result<Response<FallbackBody<RB>>, BoxError>> + Send>>;

/// The future of [`Fallback`]: the inner service's own, passed through, when the request's
/// group has no fallback (its response's body then names that group as the one that
/// served, see [`FallbackBody::served_by`]), or the boxed walk through the group and its
/// fallbacks.
#[pin_project]
pub struct FallbackFuture<F, RB> {
    #[pin]
    kind: Kind<F, RB>,
}

#[pin_project(project = KindProj)]
enum Kind<F, RB> {
    Direct {
        #[pin]
        fut: F,
        /// The request's group, for [`ServedBy`] (taken when the answer comes).
        group: Option<ModelGroup>,
        /// Whether the response also carries [`ServedBy`] as an extension.
        extension: bool,
    },
    Chain(Chain<RB>),
}

impl<F, RB> fmt::Debug for FallbackFuture<F, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Direct { .. } => "direct",
            Kind::Chain(_) => "with fallbacks",
        };
        f.debug_struct("FallbackFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, RB, E> Future for FallbackFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<FallbackBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct {
                fut,
                group,
                extension,
            } => {
                let resp = std::task::ready!(fut.poll(cx)).map_err(Into::into)?;
                let resp = resp.map(FallbackBody::inner);
                Poll::Ready(match group.take() {
                    Some(g) => served(Ok(resp), g, 0, *extension),
                    None => Ok(resp),
                })
            }
            KindProj::Chain(chain) => chain.as_mut().poll(cx),
        }
    }
}

/// Response body of [`Fallback`]: the inner body, or the buffered body of a rejection it
/// read to classify; either way it names the group that served
/// ([`served_by`](Self::served_by)) and lends the inner body ([`get_ref`](Self::get_ref)).
#[pin_project]
pub struct FallbackBody<B> {
    #[pin]
    kind: BodyKind<B>,
    /// Set by [`Fallback`] for a request with a [`ModelGroup`].
    served: Option<ServedBy>,
}

#[pin_project(project = BodyKindProj)]
enum BodyKind<B> {
    /// The inner service's body, untouched.
    Inner(#[pin] B),
    /// A body read in full: its bytes (taken once), and the inner body, drained.
    Buffered {
        bytes: Option<Bytes>,
        drained: Pin<Box<B>>,
    },
}

impl<B> FallbackBody<B> {
    fn inner(b: B) -> Self {
        Self {
            kind: BodyKind::Inner(b),
            served: None,
        }
    }

    fn buffered(bytes: Bytes, drained: Pin<Box<B>>) -> Self {
        Self {
            kind: BodyKind::Buffered {
                bytes: Some(bytes),
                drained,
            },
            served: None,
        }
    }

    /// The group that gave the response and how many fallback groups were tried: what the
    /// [`ServedBy`] extension of [`FallbackLayer::with_response_extension`] holds, here at
    /// no cost. `None` only for a request without a [`ModelGroup`] (passed through
    /// untouched).
    pub fn served_by(&self) -> Option<&ServedBy> {
        self.served.as_ref()
    }

    /// The inner body, borrowed (for what it tells about the answer, e.g.
    /// [`ResponseBody::selected_deployment`](crate::routing::ResponseBody::selected_deployment));
    /// drained when [`is_buffered`](Self::is_buffered).
    pub fn get_ref(&self) -> &B {
        match &self.kind {
            BodyKind::Inner(b) => b,
            BodyKind::Buffered { drained, .. } => drained,
        }
    }

    /// Whether this body was read in full to classify a rejection (its frames are then
    /// the bytes read, not the inner body's).
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, BodyKind::Buffered { .. })
    }

    /// The inner body, if it was not buffered.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            BodyKind::Inner(b) => Some(b),
            BodyKind::Buffered { .. } => None,
        }
    }
}

impl<B> fmt::Debug for FallbackBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FallbackBody");
        match &self.kind {
            BodyKind::Inner(_) => d.field("body", &"inner"),
            BodyKind::Buffered { bytes, .. } => {
                d.field("buffered_bytes", &bytes.as_ref().map_or(0, Bytes::len))
            }
        };
        d.field("served_by", &self.served).finish()
    }
}

impl<B> Body for FallbackBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner(b) => b.poll_frame(cx),
            BodyKindProj::Buffered { bytes, .. } => {
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(B::Data::from(b)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner(b) => b.is_end_stream(),
            BodyKind::Buffered { bytes, .. } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner(b) => b.size_hint(),
            BodyKind::Buffered { bytes, .. } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_told_apart_by_body() {
        let c = DefaultClassifier::default();
        let of = |status: u16, body: &[u8]| {
            let status = http::StatusCode::from_u16(status).unwrap();
            failure_of(c.classify_response(status, &http::HeaderMap::new(), Some(body)))
        };
        let cw = br#"{"error":{"code":"context_length_exceeded","message":"This model's maximum context length is 8192 tokens"}}"#;
        assert_eq!(of(400, cw), Some(Failure::ContextWindow));
        let cp = br#"{"error":{"code":"content_policy_violation"}}"#;
        assert_eq!(of(400, cp), Some(Failure::ContentPolicy));
        assert_eq!(of(400, b"{\"error\":\"bad json\"}"), None);
        assert_eq!(
            of(500, cw),
            Some(Failure::General),
            "a 5xx is the deployment's failure"
        );
        assert_eq!(of(200, b"{}"), None);
    }

    #[test]
    fn lists_by_kind_then_general_then_default() {
        let mut f = Fallbacks::default();
        f.general.insert("a".into(), vec!["g".into()]);
        f.context_window.insert("a".into(), vec!["big".into()]);
        f.default = vec!["d".into()];
        assert_eq!(f.for_failure("a", Failure::ContextWindow), ["big"]);
        assert_eq!(f.for_failure("a", Failure::ContentPolicy), ["g"]);
        assert_eq!(f.for_failure("a", Failure::General), ["g"]);
        assert_eq!(f.for_failure("other", Failure::General), ["d"]);
    }
}
