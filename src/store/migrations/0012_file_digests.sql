-- The sha256 of each local file a plan read, by the file's identity (`stat`: device, inode,
-- size, mtime, ctime), so that planning the same files again reads only those that changed:
-- a standing performance that gains one image hashes that image, not the whole folder.
CREATE TABLE file_digests (
    path      TEXT PRIMARY KEY,
    identity  BLOB NOT NULL,
    sha256    TEXT NOT NULL
) WITHOUT ROWID;
