//! Checks on free text from clients (user names, concert titles and venues), shared by every route that
//! stores such text.

use crate::error::{ApiError, ApiResult};

/// The most characters a stored text field may have (the schema checks the same).
pub const MAX_TEXT_CHARS: usize = 200;

/// `value` trimmed, if it has 1 to [`MAX_TEXT_CHARS`] characters and no control characters (NUL, line
/// breaks, tabs, escapes): Postgres cannot store NUL, and the others only ever serve to spoof output.
/// Otherwise 400 `VALIDATION_FAILED` naming `field`.
pub fn text_field(field: &str, value: &str) -> ApiResult<String> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field} must not contain control characters"
        )));
    }
    let trimmed = value.trim();
    if trimmed.is_empty() || value.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::validation(format!(
            "{field} must be 1 to {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_text_and_trims_it() {
        assert_eq!(text_field("name", "  Kim Ji-woo ").unwrap(), "Kim Ji-woo");
        assert_eq!(
            text_field("name", &"가".repeat(200))
                .unwrap()
                .chars()
                .count(),
            200
        );
    }

    #[test]
    fn refuses_control_characters_empty_and_long_text() {
        for bad in [
            "a\0b",
            "line\nbreak",
            "tab\t",
            "\u{7f}",
            "\u{85}",
            "",
            "   ",
            &"x".repeat(201),
        ] {
            assert!(text_field("name", bad).is_err(), "{bad:?} was accepted");
        }
    }
}
