//! The pages over plain HTTP: served from the binary with the right content types, nothing from outside.

use concert_tests::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_and_their_files_are_served_with_their_types() {
    let stack = TestStack::start().await;
    let api = stack.api();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/admin/", "text/html; charset=utf-8"),
        ("/assets/app/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app/room.js", "text/javascript; charset=utf-8"),
        ("/assets/admin/admin.js", "text/javascript; charset=utf-8"),
        ("/assets/shared/api.js", "text/javascript; charset=utf-8"),
        ("/assets/shared/style.css", "text/css; charset=utf-8"),
    ] {
        let resp = api.get(path).send().await;
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.content_type(), content_type, "{path}");
        let csp = resp.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(
            !resp.text.contains("https://"),
            "{path} loads nothing from outside"
        );
    }
    let page = api.get("/").send().await;
    for hook in [
        "signup-name",
        "signup-button",
        "balance",
        "charge-amount",
        "charge-button",
    ] {
        assert!(
            page.text.contains(&format!(r#"data-test="{hook}""#)),
            "the app has {hook}"
        );
    }
    // Unknown files are a problem document like any unknown path, not a page.
    let missing = api.get("/assets/app/nope.js").send().await;
    missing.expect_problem(404, "NOT_FOUND");
    let traversal = api.get("/assets/../Cargo.toml").send().await;
    assert_eq!(traversal.status, 404);
}
