//! Multipart upload of a large file (a long reference video): parts of [`PART_SIZE`] read one at
//! a time (memory stays at one part), hashed as they go, and completed only when the whole
//! file's sha256 is the planned one; otherwise, or on any failure, the upload is aborted, so a
//! content-addressed name never holds other bytes.

use std::path::Path;
use std::sync::atomic::Ordering;

use rusty_s3::S3Action;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload};
use sha2::{Digest, Sha256};

use super::PublishFailure;
use super::local::{changed, content_type, read_part, unreadable};
use super::s3::{MediaStore, PART_SIZE};

const REQUEST_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub(super) async fn upload(
    store: &MediaStore,
    path: &Path,
    file: std::fs::File,
    sha256: &str,
    name: &str,
) -> Result<(), PublishFailure> {
    let (bucket, creds) = store.bucket();
    let mut create = bucket.create_multipart_upload(Some(creds), name);
    create
        .headers_mut()
        .insert("content-type", content_type(path));
    let url = create.sign(REQUEST_TTL);
    let ct = content_type(path);
    let answer = store
        .call(
            name,
            "start a multipart upload",
            || {
                store
                    .http()
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, ct)
            },
            &[],
        )
        .await?;
    let body = answer.text().await.unwrap_or_default();
    let upload_id = CreateMultipartUpload::parse_response(&body)
        .map_err(|_| PublishFailure::Unavailable {
            file: store.describe(name),
            why: "the answer to starting a multipart upload has no upload id".into(),
        })?
        .upload_id()
        .to_owned();
    let result = send_parts(store, path, file, sha256, name, &upload_id).await;
    if result.is_err() {
        // Parts of an unfinished upload are stored (and billed) until aborted.
        let url = bucket
            .abort_multipart_upload(Some(creds), name, &upload_id)
            .sign(REQUEST_TTL);
        let _ = store
            .call(
                name,
                "abort a multipart upload",
                || store.http().delete(url.clone()),
                &[404],
            )
            .await;
    }
    result
}

async fn send_parts(
    store: &MediaStore,
    path: &Path,
    mut file: std::fs::File,
    sha256: &str,
    name: &str,
    upload_id: &str,
) -> Result<(), PublishFailure> {
    let (bucket, creds) = store.bucket();
    let mut hasher = Sha256::new();
    let mut etags = Vec::new();
    for number in 1u16.. {
        let (rest, part) = read_part(file, PART_SIZE as u64)
            .await
            .map_err(|e| unreadable(path, &e))?;
        file = rest;
        if part.is_empty() {
            break;
        }
        hasher.update(&part);
        let len = part.len() as u64;
        let part = bytes::Bytes::from(part);
        let url = bucket
            .upload_part(Some(creds), name, number, upload_id)
            .sign(REQUEST_TTL);
        let answer = store
            .call(
                name,
                &format!("upload part {number}"),
                || store.http().put(url.clone()).body(part.clone()),
                &[],
            )
            .await?;
        let etag = answer
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 200)
            .ok_or_else(|| PublishFailure::Unavailable {
                file: store.describe(name),
                why: format!("part {number} was answered without an ETag"),
            })?
            .to_owned();
        etags.push(etag);
        store.progress.bytes_sent.fetch_add(len, Ordering::Relaxed);
    }
    if hex::encode(hasher.finalize()) != sha256 {
        return Err(changed(path, sha256));
    }
    let complete: CompleteMultipartUpload<'_, _> = bucket.complete_multipart_upload(
        Some(creds),
        name,
        upload_id,
        etags.iter().map(String::as_str),
    );
    let url = complete.sign(REQUEST_TTL);
    let body = complete.body();
    let answer = store
        .call(
            name,
            "complete a multipart upload",
            || store.http().post(url.clone()).body(body.clone()),
            &[],
        )
        .await?;
    // S3 may answer 200 and put an error in the body (see `CompleteMultipartUpload`).
    let text = answer.text().await.unwrap_or_default();
    if text.contains("<Error>") {
        return Err(PublishFailure::Unavailable {
            file: store.describe(name),
            why: "completing the multipart upload failed".into(),
        });
    }
    Ok(())
}
