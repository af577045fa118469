//! Cursor pages shared by the list routes (`GET /v1/runs`, `GET /v1/events`):
//! one rule for `limit` and one way to cut a page and name its `next_cursor`.

use super::error::ApiError;

/// `limit` as given (1 to 500) or 50; 400 naming `limit` otherwise.
pub fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500", Some("limit")));
    }
    Ok(limit)
}

/// Cuts `rows`, read with `limit + 1`, to one page, with the cursor of its
/// last row when another page follows.
pub fn cut<T>(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor) } else { None };
    (rows, next)
}
