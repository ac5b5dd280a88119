//! Where each request is handled: one module per area of the contract.

pub mod admin;
pub mod bookings;
pub mod box_office;
pub mod cancellations;
pub mod catalog;
pub mod ops;
pub mod queue;
pub mod queue_events;
pub mod requests;
pub mod users;
pub mod web;

use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::state::AppState;

/// Every route of the contract.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users", post(users::sign_up))
        .route("/v1/me/balance", get(users::balance))
        .route("/v1/me/balance/charges", post(users::charge))
        .route("/v1/me/balance/history", get(users::history))
        .route("/v1/me/reservations", get(users::reservations))
        .route("/v1/me/holds", get(users::holds))
        .route("/v1/concerts", get(catalog::concerts))
        .route("/v1/concerts/{concert_id}/dates", get(catalog::dates))
        .route(
            "/v1/concerts/{concert_id}/dates/{date_id}/seats",
            get(catalog::seats),
        )
        .route("/v1/concerts/{concert_id}/queue", post(queue::join))
        .route(
            "/v1/concerts/{concert_id}/queue/challenge",
            get(queue::challenge),
        )
        .route("/v1/queue/status", get(queue::status))
        .route("/v1/queue/events", get(queue_events::events))
        .route("/v1/holds", post(bookings::hold))
        .route("/v1/holds/{hold_id}", delete(bookings::release))
        .route("/v1/payments", post(bookings::pay))
        .route(
            "/v1/reservations/{reservation_id}",
            delete(cancellations::cancel_reservation),
        )
        .route("/v1/requests/{request_id}", get(requests::poll))
        .route("/v1/admin/concerts", post(admin::create_concert))
        .route(
            "/v1/admin/concerts/{concert_id}/waiting-room",
            put(admin::set_policy).get(admin::get_policy),
        )
        .route(
            "/v1/admin/concerts/{concert_id}/sales",
            get(box_office::sales),
        )
        .route(
            "/v1/admin/dates/{date_id}/cancel",
            post(cancellations::cancel_date),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(web::routes())
}
