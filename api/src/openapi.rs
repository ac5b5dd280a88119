//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    admin, bookings, box_office, cancellations, catalog, ops, queue, queue_events, requests, users,
    web,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Concert booking API", version = "1.1.0",
         description = "Seat booking behind a virtual waiting room. Commands go through a Kafka log: submit, then poll. See docs/API.md."),
    paths(
        users::sign_up, users::balance, users::charge, users::history, users::reservations, users::holds,
        catalog::concerts, catalog::dates, catalog::seats,
        queue::join, queue::challenge, queue::status, queue_events::events,
        bookings::hold, bookings::release, bookings::pay,
        cancellations::cancel_reservation, cancellations::cancel_date, box_office::sales,
        requests::poll,
        admin::create_concert, admin::set_policy, admin::get_policy,
        ops::healthz, ops::readyz, ops::metrics,
        web::fans_app, web::admin_page,
    ),
    components(schemas(concert_core::Problem, concert_core::ErrorCode, concert_core::commands::CommandKind,
        concert_core::commands::HoldResult, concert_core::commands::ReleaseResult, concert_core::commands::PaymentResult, concert_core::commands::PaidSeat,
        concert_core::commands::PaymentEvent, concert_core::commands::CancelResult,
        concert_core::commands::DateCancelResult, concert_core::commands::RefundEvent, concert_core::admission::Policy, concert_core::seats::SeatStatus,
        crate::submit::JoinView)),
    modifiers(&Security, &Unavailable),
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

/// Every operation may be answered `503 UNAVAILABLE` with `Retry-After` (load shedding, a dependency down),
/// and a submit only before its command is on the log: afterwards the answer is 202 with the request id.
struct Unavailable;

impl Modify for Unavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

        let response = ResponseBuilder::new()
            .description(
                "UNAVAILABLE: the service is busy (too many requests in progress, a request that took too long) \
                 or a dependency is down. Retry after `Retry-After` seconds with the same Idempotency-Key; \
                 a command is never answered 503 once it is on the log.",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("seconds to wait before retrying"))
                    .build(),
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(|| RefOr::T(response.clone()));
            }
        }
    }
}
