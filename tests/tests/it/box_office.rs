//! The organizer's side: cancelling a date (holds released, reservations refunded, the date closed, the
//! same answer when sent again) and the box office figures, which add up.

use concert_tests::{Api, Concert, TestStack, User};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{buyer, count, max_active, time, uuid};

/// `user` buys seat `seat_no` of date `date` of the concert; returns the reservation id.
async fn bought(api: &Api, user: &User, concert: &Concert, date: usize, seat_no: i64) -> String {
    let token = api.enter(user, concert.concert_id).await;
    let hold = api
        .hold_ok(user, &token, concert.dates[date].date_id, seat_no)
        .await;
    let paid = api
        .pay(user, &token, hold["hold_id"].as_str().expect("hold_id"))
        .await
        .expect_success();
    paid["reservation_id"]
        .as_str()
        .expect("reservation_id")
        .to_owned()
}

/// A user with `money` won.
async fn fan(api: &Api, name: &str, money: i64) -> User {
    let user = api.sign_up(name).await;
    api.charge(&user, money).await;
    user
}

fn date_figures(sales: &Value, date_id: Uuid) -> &Value {
    sales["dates"]
        .as_array()
        .expect("dates")
        .iter()
        .find(|d| d["date_id"] == json!(date_id))
        .unwrap_or_else(|| panic!("date {date_id} in {sales}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_cancel_releases_refunds_closes_the_date_and_answers_the_same_again() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(2, 5_000).await;
    let (cancelled, other) = (concert.dates[0].date_id, concert.dates[1].date_id);
    let ada = fan(api, "ada", 10_000).await;
    let cy = fan(api, "cy", 5_000).await;
    let ada_1 = bought(api, &ada, &concert, 0, 1).await;
    let ada_2 = bought(api, &ada, &concert, 0, 2).await;
    let cy_1 = bought(api, &cy, &concert, 1, 1).await;
    let (bob, bob_token) = buyer(api, "bob", &concert, 5_000).await;
    let held = api.hold_ok(&bob, &bob_token, cancelled, 3).await;
    assert_eq!(api.balance(&ada).await, 0);

    let resp = api.cancel_date_raw(cancelled).await;
    let doc = resp.expect(200).clone();
    assert_eq!(
        (doc["kind"].as_str(), doc["status"].as_str()),
        (Some("CANCEL_DATE"), Some("SUCCEEDED")),
        "{doc}"
    );
    let result = doc["result"].clone();
    assert_eq!(result["date_id"], json!(cancelled));
    assert_eq!(result["reservations_refunded"], json!(2));
    assert_eq!(result["holds_released"], json!(1));
    let canceled_at = time(&result["canceled_at"]);

    assert_eq!(api.balance(&ada).await, 10_000, "both seats refunded");
    let history = api.history(&ada, 50).await;
    let refunds: Vec<&Value> = history.iter().filter(|e| e["kind"] == "REFUND").collect();
    assert_eq!(refunds.len(), 2, "{history:?}");
    for r in api.reservations(&ada).await {
        let id = r["reservation_id"].as_str().expect("reservation_id");
        assert!(id == ada_1 || id == ada_2, "{r}");
        assert_eq!(r["status"], "CANCELED", "{r}");
        assert_eq!(time(&r["canceled_at"]), canceled_at);
    }
    let cy_ticket = &api.reservations(&cy).await[0];
    assert_eq!(
        (
            cy_ticket["reservation_id"].as_str(),
            cy_ticket["status"].as_str()
        ),
        (Some(cy_1.as_str()), Some("CONFIRMED")),
        "another date's tickets stand"
    );

    // The date is gone from the dates on sale, and takes no more holds or payments.
    let dates = api
        .dates_raw(&bob, Some(&bob_token), concert.concert_id)
        .await;
    let listed: Vec<&Value> = dates.expect(200)["dates"]
        .as_array()
        .expect("dates")
        .iter()
        .map(|d| &d["date_id"])
        .collect();
    assert_eq!(listed, [&json!(other)]);
    api.hold(&bob, &bob_token, cancelled, 4)
        .await
        .expect_failure(409, "DATE_CLOSED");
    api.pay(&bob, &bob_token, held["hold_id"].as_str().expect("hold_id"))
        .await
        .expect_failure(409, "DATE_CLOSED");
    assert_eq!(api.balance(&bob).await, 5_000);
    let seats = api
        .seats(&bob, &bob_token, concert.concert_id, cancelled)
        .await;
    assert!(
        seats.iter().all(|s| s["status"] == "AVAILABLE"),
        "nothing held or sold: {seats:?}"
    );

    // Again: the same counts and time, nothing more refunded.
    let again = api.cancel_date_raw(cancelled).await;
    let again = again.expect(200);
    assert_ne!(again["request_id"], doc["request_id"]);
    assert_eq!(again["result"], result);
    assert_eq!(api.balance(&ada).await, 10_000);
    let db = stack.db();
    assert_eq!(count(db, "SELECT count(*) FROM refunds", None).await, 2);
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM outbox WHERE event_type = 'payment.refunded'",
            None
        )
        .await,
        2,
        "one event per refund"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_cancel_answers_202_without_waiting_and_the_admin_polls_it() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(1, 1_000).await;
    let ada = fan(api, "ada", 1_000).await;
    bought(api, &ada, &concert, 0, 1).await;
    let path = format!("/v1/admin/dates/{}/cancel", concert.date());

    api.post(&path)
        .auth(&ada)
        .send()
        .await
        .expect_problem(401, "UNAUTHORIZED");
    api.admin(
        Method::POST,
        &format!("/v1/admin/dates/{}/cancel", Uuid::new_v4()),
    )
    .send()
    .await
    .expect_problem(404, "DATE_NOT_FOUND");

    let resp = api.admin(Method::POST, &path).wait(0).send().await;
    let accepted = resp.expect(202).clone();
    let request_id = accepted["request_id"].as_str().expect("request_id");
    let location = resp.header("location").expect("Location").to_owned();
    assert_eq!(location, format!("/v1/requests/{request_id}"));

    let polled = api.admin(Method::GET, &location).wait(10).send().await;
    let doc = polled.expect(200);
    assert_eq!(doc["kind"], "CANCEL_DATE");
    assert_eq!(doc["status"], "SUCCEEDED", "{doc}");
    assert_eq!(doc["result"]["reservations_refunded"], json!(1));
    assert_eq!(doc["result"]["holds_released"], json!(0));
    api.get(&location)
        .auth(&ada)
        .send()
        .await
        .expect_problem(404, "REQUEST_NOT_FOUND");
    api.get(&location)
        .send()
        .await
        .expect_problem(401, "UNAUTHORIZED");
    assert_eq!(api.balance(&ada).await, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_figures_add_up_per_date_and_for_the_concert() {
    let stack = TestStack::start().await;
    let api = stack.api();
    let concert = api.create_concert(2, 4_000).await;
    api.set_policy(concert.concert_id, &max_active(100, 600, 300))
        .await;
    let (open, canceled) = (concert.dates[0].date_id, concert.dates[1].date_id);
    let ada = fan(api, "ada", 8_000).await;
    let bob = fan(api, "bob", 4_000).await;
    let dan = fan(api, "dan", 4_000).await;
    bought(api, &ada, &concert, 0, 1).await;
    bought(api, &ada, &concert, 0, 2).await;
    let bobs = bought(api, &bob, &concert, 0, 3).await;
    api.cancel(&bob, &bobs).await.expect_success();
    bought(api, &dan, &concert, 1, 10).await;
    let (cy, cy_token) = buyer(api, "cy", &concert, 0).await;
    api.hold_ok(&cy, &cy_token, open, 4).await;
    api.cancel_date_raw(canceled).await.expect(200);

    let sales = api.sales(concert.concert_id).await;
    assert_eq!(sales["concert_id"], json!(concert.concert_id));
    let first = date_figures(&sales, open);
    assert_eq!(first["status"], "OPEN");
    assert_eq!(
        [
            &first["total_seats"],
            &first["sold"],
            &first["held"],
            &first["available"],
            &first["revenue"],
            &first["refunded"]
        ],
        [
            &json!(50),
            &json!(2),
            &json!(1),
            &json!(47),
            &json!(8_000),
            &json!(4_000)
        ],
        "{first}"
    );
    let second = date_figures(&sales, canceled);
    assert_eq!(second["status"], "CANCELED");
    assert_eq!(
        [
            &second["sold"],
            &second["held"],
            &second["available"],
            &second["revenue"],
            &second["refunded"]
        ],
        [&json!(0), &json!(0), &json!(50), &json!(0), &json!(4_000)],
        "{second}"
    );
    assert_eq!(sales["revenue"], json!(8_000));
    assert_eq!(sales["refunded"], json!(8_000));
    for d in sales["dates"].as_array().expect("dates") {
        let n = |f: &str| d[f].as_i64().unwrap_or_else(|| panic!("{f} in {d}"));
        assert_eq!(n("sold") + n("held") + n("available"), n("total_seats"));
        time(&d["starts_at"]);
        uuid(&d["date_id"]);
    }
    // The money agrees with the ledger: charges - payments + refunds = balances.
    let db = stack.db();
    let ledger: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(CASE kind WHEN 'PAYMENT' THEN -amount ELSE amount END), 0)::bigint FROM balance_ledger",
    )
    .fetch_one(db)
    .await
    .expect("ledger");
    let balances: i64 = sqlx::query_scalar("SELECT sum(balance)::bigint FROM users")
        .fetch_one(db)
        .await
        .expect("balances");
    assert_eq!(ledger, balances);
    assert_eq!(balances, 16_000 - 8_000, "only ada's two seats stay paid");

    // A date that has started, and the errors.
    let past = api
        .create_concert_with(&json!({
            "title": "Last year", "venue": "Hall",
            "dates": [{ "starts_at": "2020-01-01T19:00:00Z", "price": 100 }]
        }))
        .await;
    let figures = api.sales(past.concert_id).await;
    assert_eq!(figures["dates"][0]["status"], "STARTED");
    assert_eq!(figures["revenue"], json!(0));
    api.admin(
        Method::GET,
        &format!("/v1/admin/concerts/{}/sales", Uuid::new_v4()),
    )
    .send()
    .await
    .expect_problem(404, "CONCERT_NOT_FOUND");
    api.get(&format!("/v1/admin/concerts/{}/sales", concert.concert_id))
        .auth(&ada)
        .send()
        .await
        .expect_problem(401, "UNAUTHORIZED");
}
