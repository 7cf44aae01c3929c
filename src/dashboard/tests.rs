//! The dashboard's pages as a browser is sent them: its real router on a loopback port, over a
//! real (in-memory) store.

use std::sync::Arc;

use super::pages::PAGE_CARDS;
use super::{Dashboard, router};
use crate::store::Store;
use crate::store::tests::{batch, jobs};

/// A dashboard over a store with one batch of `n` jobs (subjects `s-k0000`, ...); its address
/// and the batch's id.
async fn serving(n: usize) -> (String, i64) {
    let store = Store::open_in_memory().unwrap();
    let batch_id = store
        .register_batch(&batch("b", None, 0), jobs("k", n))
        .unwrap()
        .batch_id;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dashboard = Dashboard::new(Arc::new(store), addr, None, false).unwrap();
    tokio::spawn(async move { axum::serve(listener, router(dashboard)).await });
    (format!("http://{addr}"), batch_id)
}

async fn get(url: &str) -> String {
    let answer = reqwest::get(url).await.unwrap();
    assert_eq!(answer.status(), 200, "{url}");
    answer.text().await.unwrap()
}

/// The subjects whose cards a page holds, in order.
fn subjects(html: &str) -> Vec<String> {
    html.split("alt=\"subject ")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

fn expected(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("s-k{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_is_shown_a_page_of_cards_at_a_time() {
    assert_eq!(PAGE_CARDS, 100, "the numbers below are for pages of 100");
    let (base, id) = serving(250).await;

    let first = get(&format!("{base}/batches/{id}")).await;
    assert_eq!(subjects(&first), expected(0, 100));
    assert!(
        first.contains("jobs 1 to 100 of 250 · page 1 of 3"),
        "{first}"
    );
    assert!(first.contains(&format!("href=\"/batches/{id}?page=2\"")));
    assert!(first.contains(&format!("href=\"/batches/{id}?page=3\"")));
    assert!(first.contains("data-page=\"1\""));

    let last = get(&format!("{base}/batches/{id}?page=3")).await;
    assert_eq!(subjects(&last), expected(200, 250));
    assert!(last.contains("jobs 201 to 250 of 250 · page 3 of 3"));
    assert!(last.contains(&format!("href=\"/batches/{id}?page=2\"")));

    // A page past the end shows the last one; the live grid serves the page it is asked for.
    let beyond = get(&format!("{base}/batches/{id}?page=99")).await;
    assert_eq!(subjects(&beyond), expected(200, 250));
    let grid = get(&format!("{base}/batches/{id}/grid?page=2")).await;
    assert_eq!(subjects(&grid), expected(100, 200));
    assert!(!grid.contains("<nav"), "the grid alone has no pager");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_batch_is_one_page_without_a_pager() {
    let (base, id) = serving(3).await;
    let page = get(&format!("{base}/batches/{id}")).await;
    assert_eq!(subjects(&page), expected(0, 3));
    assert!(!page.contains("<nav"), "{page}");
}
