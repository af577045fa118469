//! The store's part of a benchmark floor: a scratch database takes the
//! rows it is given (event rows, run rows moved) in the commits it is told,
//! on either backend, and what a writer committed is counted as it goes.

use sandstep::store::floor::{Committed, Scratch};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scratch_database_commits_exactly_the_rows_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::open(dir.path()).await;
    let mut scratch = Scratch::open(db, 8).await.unwrap();
    let took = scratch
        .commit(Committed {
            commits: 3,
            events: 1_001,
            started: 7,
            moved: 5,
        })
        .await
        .unwrap();
    assert!(took > std::time::Duration::ZERO);
    let events = query(dir.path(), "SELECT COUNT(*), COUNT(DISTINCT seq) FROM events").await;
    assert_eq!(events[0], vec![serde_json::json!(1_001), serde_json::json!(1_001)]);
    let moved = query(
        dir.path(),
        "SELECT COUNT(*), CAST(SUM(last_seq) AS BIGINT) FROM runs WHERE id NOT LIKE 'floor-new-%'",
    )
    .await;
    assert_eq!(moved[0], vec![serde_json::json!(8), serde_json::json!(5)]);
    let started = query(dir.path(), "SELECT COUNT(*) FROM runs WHERE id LIKE 'floor-new-%'").await;
    assert_eq!(started[0][0], serde_json::json!(7));
    // Again: more rows, never a key twice.
    scratch
        .commit(Committed {
            commits: 1,
            events: 10,
            started: 2,
            moved: 1,
        })
        .await
        .unwrap();
    let events = query(dir.path(), "SELECT COUNT(*) FROM events").await;
    assert_eq!(events[0][0], serde_json::json!(1_011));
    let started = query(dir.path(), "SELECT COUNT(*) FROM runs WHERE id LIKE 'floor-new-%'").await;
    assert_eq!(started[0][0], serde_json::json!(9));
}

#[test]
fn committed_counts_subtract_to_what_happened_between() {
    let before = Committed {
        commits: 2,
        events: 10,
        started: 1,
        moved: 3,
    };
    let after = Committed {
        commits: 5,
        events: 31,
        started: 4,
        moved: 9,
    };
    assert_eq!(
        after.since(before),
        Committed {
            commits: 3,
            events: 21,
            started: 3,
            moved: 6
        }
    );
    assert_eq!(before.since(after), Committed::default());
}
