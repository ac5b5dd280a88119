//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, bookings, catalog, ops, queue, requests, users, web};

#[derive(OpenApi)]
#[openapi(
    info(title = "Concert booking API", version = "1.1.0",
         description = "Seat booking behind a virtual waiting room. Commands go through a Kafka log: submit, then poll. See docs/API.md."),
    paths(
        users::sign_up, users::balance, users::charge, users::history, users::reservations,
        catalog::concerts, catalog::dates, catalog::seats,
        queue::join, queue::status,
        bookings::hold, bookings::release, bookings::pay,
        requests::poll,
        admin::create_concert, admin::set_policy, admin::get_policy,
        ops::healthz, ops::readyz, ops::metrics,
        web::fans_app, web::admin_page,
    ),
    components(schemas(concert_core::Problem, concert_core::ErrorCode, concert_core::commands::CommandKind,
        concert_core::commands::HoldResult, concert_core::commands::ReleaseResult, concert_core::commands::PaymentResult,
        concert_core::commands::PaymentEvent, concert_core::admission::Policy, concert_core::seats::SeatStatus,
        crate::submit::JoinView)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("bearer", bearer());
        components.add_security_scheme("admin", bearer());
    }
}
