//! The state folder kept private: created 0700, and the folder and database made private
//! again when someone opened them up.
//!
//! Owns: those permissions. May not: touch files that are not the state folder's own.

use std::path::Path;

use super::StoreError;

/// Make what recast keeps private again when someone opened it up (a 0777 state folder, a
/// 0644 database): the database holds task ids, clip links and spending. Files that are not
/// ours are left as they are, with a warning.
pub(super) fn keep_private(path: &Path, mode: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.mode() & 0o077 == 0 {
        return;
    }
    // The process's own uid, without `unsafe`: /proc/self belongs to it.
    let ours = std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == meta.uid());
    if ours && std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok() {
        tracing::warn!(path = %path.display(), "was readable by others; made private ({mode:o})");
    } else {
        tracing::warn!(path = %path.display(), "is readable by others and cannot be made private");
    }
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        keep_private(dir, 0o700);
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            what: format!("create the state folder {}", dir.display()),
            source,
        })
}
