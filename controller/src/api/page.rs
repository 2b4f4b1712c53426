//! Pagination of list answers: `?per_page=N&page=P`.
//!
//! A page is a JSON array; `X-Total-Count` says how many items there are in all, and
//! `Link: <...>; rel="next"` (RFC 8288, as GitHub's API does) points at the next page
//! while there is one. Clients follow `next` until it is absent.

use http::{HeaderValue, Response};
use serde::Serialize;

use super::body::{self, ApiBody};
use super::failure::Failure;
use super::query;

/// Items per page when the request does not say.
pub const DEFAULT_PER_PAGE: usize = 100;
/// The most items one page may hold.
pub const MAX_PER_PAGE: usize = 1000;

/// Answers with the page of `items` that the query asks for.
pub fn list<T: Serialize>(items: &[T], path: &str, q: &str) -> Result<Response<ApiBody>, Failure> {
    let number = |name: &str, default: usize, max: usize| -> Result<usize, Failure> {
        match query::param(q, name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    Failure::new(
                        400,
                        "invalid-page",
                        format!("{name}={v:?} is not allowed"),
                        Some(&format!("give {name} as a whole number from 1 to {max}")),
                    )
                }),
        }
    };
    let per_page = number("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)?;
    let page = number("page", 1, usize::MAX)?;
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = start.saturating_add(per_page).min(items.len());
    let mut resp = body::json(200, &&items[start..end]);
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(items.len()));
    if end < items.len() {
        // The filter a list was asked with (`space`) holds for its next page too.
        let space = query::param(q, "space")
            .filter(|s| paas_api::auth::check_label("space", s).is_ok())
            .map(|s| format!("&space={s}"))
            .unwrap_or_default();
        let link = format!(
            "<{path}?page={}&per_page={per_page}{space}>; rel=\"next\"",
            page + 1
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(http::header::LINK, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(items: &[u32], q: &str) -> (Vec<u32>, Option<String>, String) {
        let r = list(items, "/v1/things", q).unwrap();
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let total = r.headers()["x-total-count"].to_str().unwrap().to_string();
        let body = futures_body(r);
        (serde_json::from_slice(&body).unwrap(), link, total)
    }

    fn futures_body(r: Response<ApiBody>) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(r.into_body().collect())
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn pages_link_to_the_next_until_the_last() {
        let items: Vec<u32> = (1..=5).collect();
        let (page, next, total) = get(&items, "per_page=2");
        assert_eq!((page, total.as_str()), (vec![1, 2], "5"));
        assert_eq!(
            next.as_deref(),
            Some("</v1/things?page=2&per_page=2>; rel=\"next\"")
        );
        assert_eq!(get(&items, "per_page=2&page=3").0, vec![5]);
        assert_eq!(get(&items, "per_page=2&page=3").1, None);
        assert_eq!(get(&items, "page=9").0, Vec::<u32>::new());
        assert_eq!(get(&items, "").0, items);
    }

    #[test]
    fn bad_page_parameters_are_refused() {
        for q in [
            "per_page=0",
            "per_page=1001",
            "page=0",
            "page=x",
            "per_page=-1",
        ] {
            let e = list(&[1u32], "/v1/things", q).unwrap_err();
            assert_eq!(
                (e.status, e.body.code.as_str()),
                (400, "invalid-page"),
                "{q}"
            );
        }
    }
}
