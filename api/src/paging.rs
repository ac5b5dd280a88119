//! Cursor pagination of lists, with the parameters the balance history introduced: `limit` (1..=100,
//! default 50) and `cursor` (the `next_cursor` of the previous page). A cursor names the last item of the
//! previous page, so pages stay stable while new items arrive.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A checked page request: how many items, and after which one (by id).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub after: Option<Uuid>,
}

impl Page {
    /// Checks the query: 400 `VALIDATION_FAILED` for a limit out of range or a cursor this server did not
    /// issue.
    pub fn from_query(query: Result<Query<PageQuery>, QueryRejection>) -> ApiResult<Self> {
        let Query(query) = query.map_err(|e| ApiError::validation(e.body_text()))?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::validation(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let after = query
            .cursor
            .map(|c| {
                c.parse::<Uuid>()
                    .map_err(|_| ApiError::validation("cursor is not one this server issued"))
            })
            .transpose()?;
        Ok(Self { limit, after })
    }

    /// How many rows to ask the database for: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`fetch`](Self::fetch)) to the page and gives the cursor of the next page,
    /// if there is one.
    pub fn cut<T>(&self, rows: &mut Vec<T>, id: impl Fn(&T) -> Uuid) -> Option<String> {
        if rows.len() as i64 <= self.limit {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|r| id(r).to_string())
    }
}
