//! How the routing service learns a request's route.

use std::{borrow::Cow, fmt};

use http::{HeaderName, Request};

use crate::deployment::ModelGroup;

/// Finds the route (LiteLLM's `model_name`) a request is for.
///
/// The default, [`FromExtension`], reads a [`ModelGroup`] request extension that an earlier
/// layer or handler inserted (an LLM gateway parses `"model"` from the JSON body). Use
/// [`FromHeader`] or [`route_fn`] for anything else.
pub trait RouteExtractor<B> {
    /// The route of `req`, or `None` when it names none.
    fn extract<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>>;
}

/// Reads the [`ModelGroup`] request extension. The default extractor.
#[derive(Clone, Copy, Debug, Default)]
pub struct FromExtension;

impl<B> RouteExtractor<B> for FromExtension {
    fn extract<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        req.extensions()
            .get::<ModelGroup>()
            .map(|g| Cow::Borrowed(g.as_str()))
    }
}

/// Reads a request header, e.g. `x-model`.
#[derive(Clone, Debug)]
pub struct FromHeader(HeaderName);

impl FromHeader {
    /// Reads the route from header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl<B> RouteExtractor<B> for FromHeader {
    fn extract<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        req.headers().get(&self.0)?.to_str().ok().map(Cow::Borrowed)
    }
}

/// An extractor from a function: `route_fn(|req: &Request<B>| Some(req.uri().path().to_owned()))`.
pub fn route_fn<F>(f: F) -> RouteFn<F> {
    RouteFn(f)
}

/// See [`route_fn`].
#[derive(Clone, Copy)]
pub struct RouteFn<F>(F);

impl<F> fmt::Debug for RouteFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteFn")
    }
}

impl<B, F> RouteExtractor<B> for RouteFn<F>
where
    F: Fn(&Request<B>) -> Option<String>,
{
    fn extract<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        (self.0)(req).map(Cow::Owned)
    }
}
