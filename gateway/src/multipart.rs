//! The `model` field of a `multipart/form-data` body (audio transcriptions), read and
//! rewritten by parsing the parts with `multer`: only a text field named `model` (no
//! `filename`) is the model, never a file part, whatever bytes the file holds.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};

/// A part as parsed: its raw header lines as received, whether it is the `model` field,
/// and its content.
struct Part {
    headers: http::HeaderMap,
    is_model: bool,
    data: Bytes,
}

async fn parts(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(body.clone())));
    let mut form = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| format!("malformed multipart body: {e}"))?
    {
        let is_model = field.name() == Some("model") && field.file_name().is_none();
        let headers = field.headers().clone();
        let data = field
            .bytes()
            .await
            .map_err(|e| format!("malformed multipart body: {e}"))?;
        out.push(Part {
            headers,
            is_model,
            data,
        });
    }
    Ok(out)
}

/// The `model` text field of a multipart body (`content_type` carries the boundary).
pub async fn model(content_type: &str, body: &Bytes) -> Result<String, String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| format!("malformed multipart body: {e}"))?;
    let model = parts(body, &boundary)
        .await?
        .into_iter()
        .find(|p| p.is_model)
        .ok_or("multipart body has no `model` field")?;
    String::from_utf8(model.data.to_vec())
        .map_err(|_| "the multipart `model` field is not UTF-8 text".to_owned())
}

/// The body re-encoded with the `model` text field's value set to `model`; every other
/// part (file parts included) keeps its headers and bytes.
pub async fn rewrite_model(content_type: &str, body: &Bytes, model: &str) -> Result<Bytes, String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| format!("malformed multipart body: {e}"))?;
    let parts = parts(body, &boundary).await?;
    if !parts.iter().any(|p| p.is_model) {
        return Err("multipart body has no `model` field".to_owned());
    }
    let mut out = BytesMut::with_capacity(body.len() + model.len());
    for p in parts {
        out.put_slice(b"--");
        out.put_slice(boundary.as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in &p.headers {
            out.put_slice(name.as_str().as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        if p.is_model {
            out.put_slice(model.as_bytes());
        } else {
            out.put_slice(&p.data);
        }
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"--\r\n");
    Ok(out.freeze())
}
