//! Input stamps written in chunks, record by record, and read back as they go.

use super::*;

fn stamp_of(store: &Store, batch_id: i64) -> InputStamp {
    InputStamp {
        manifest_path: "/m/jobs.yaml".to_owned(),
        provider: "test".to_owned(),
        batch_id,
        context: "c".to_owned(),
        registered_at: store.registered_at(batch_id).unwrap().unwrap(),
        results_ino: 1,
        results_len: 0,
        base_dir: String::new(),
        output_dir: String::new(),
    }
}

fn read_back(store: &Store) -> Option<Vec<u8>> {
    let kept = store.stamp("/m/jobs.yaml", "test").unwrap()?;
    let mut bytes = Vec::new();
    let read = store
        .check_stamp_files(&kept, |files| files.read_to_end(&mut bytes).is_ok())
        .unwrap();
    read.then_some(bytes)
}

#[test]
fn a_stamp_is_kept_in_chunks_only_whole_and_read_back_in_order() {
    let store = Store::open_in_memory().unwrap();
    let b = store
        .register_batch(&batch("b", None, 0), jobs("k", 1))
        .unwrap()
        .batch_id;
    let stamp = stamp_of(&store, b);
    let records = || [Some(b"one".to_vec()), Some(b"two!".to_vec())].into_iter();
    assert!(store.keep_stamp(&stamp, records()).unwrap());
    assert_eq!(read_back(&store), Some(b"onetwo!".to_vec()));

    // A stamp larger than a chunk reads back whole, in order.
    let big: Vec<Vec<u8>> = (0..40_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
    assert!(
        store
            .keep_stamp(&stamp, big.iter().cloned().map(Some))
            .unwrap()
    );
    assert_eq!(read_back(&store), Some(big.concat()));

    // A file that cannot vouch: nothing new is kept.
    let one_fails = [Some(b"new".to_vec()), None].into_iter();
    assert!(!store.keep_stamp(&stamp, one_fails).unwrap());
    assert_eq!(read_back(&store), Some(big.concat()), "the last whole one");
    store.forget_stamp("/m/jobs.yaml", "test").unwrap();
    assert_eq!(read_back(&store), None);
}
