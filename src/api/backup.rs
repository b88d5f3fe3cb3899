//! Backup and export routes (docs/backup.md): a streamed backup
//! (`GET /backup`), a streamed NDJSON export of one collection
//! (`GET /collections/{name}/export`), and backups kept on the server
//! (`/backups`: create, list, download, delete; scope `admin`).

use super::{collection_name, internal_name, json, Api, ApiError, ApiResult, Body, ErrorCode};
use crate::auth::{Principal, Scope};
use crate::backup::{CutRequest, ExportRun, Format, Manifest};
use std::path::PathBuf;

const BACKUP_EXT: &str = "aionbd";
const CONTENT_TYPE: &str = "application/octet-stream";

impl Api {
    /// What a caller may back up, as cuts: with auth off or scope `admin`,
    /// every collection (all tenants); otherwise the caller's tenant's. A
    /// `collection=NAME` (repeatable) narrows it to those collections of the
    /// caller's namespace.
    fn backup_cuts(&self, query: Option<&str>, who: &Principal) -> Result<Vec<CutRequest>, ApiError> {
        let tenant = who.tenant.as_deref();
        let mut named = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("collection", v)) => {
                    named.push(internal_name(tenant, &collection_name(&super::percent_decode(v)?)?))
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "unknown query parameter '{pair}' (this route takes collection=NAME, repeatable)"
                    )))
                }
            }
        }
        if !named.is_empty() {
            let mut cuts: Vec<CutRequest> = Vec::new();
            for name in named {
                let home = self.placement.home(&name);
                match cuts.iter_mut().find(|c| c.home == home) {
                    Some(c) if !c.only.contains(&name) => c.only.push(name),
                    Some(_) => {}
                    None => cuts.push(CutRequest { home, only: vec![name], tenant: None }),
                }
            }
            return Ok(cuts);
        }
        match tenant {
            Some(t) if who.scope < Scope::Admin => {
                // A tenant's collections all live on its home shard.
                let home = self.placement.home(&internal_name(Some(t), "x"));
                Ok(vec![CutRequest { home, only: Vec::new(), tenant: Some(t.to_owned()) }])
            }
            _ => Ok(self
                .all_shards()
                .into_iter()
                .map(|home| CutRequest { home, only: Vec::new(), tenant: None })
                .collect()),
        }
    }

    async fn run(&self, format: Format, cuts: Vec<CutRequest>) -> Result<ExportRun, ApiError> {
        Ok(ExportRun::start(self.node.clone(), self.placement, format, cuts).await?)
    }

    /// `GET /backup`: the backup file, streamed as it is made.
    pub(super) async fn backup_stream(&self, query: Option<&str>, who: &Principal) -> ApiResult {
        let run = self.run(Format::Backup, self.backup_cuts(query, who)?).await?;
        let file = format!("aionbd-{}.{BACKUP_EXT}", crate::backup::now_unix_ms());
        Ok(Body::Stream(CONTENT_TYPE, Some(file), run.into_stream()))
    }

    /// `GET /collections/{name}/export`: NDJSON, the collection's line first.
    pub(super) async fn export(&self, name: &str) -> ApiResult {
        let cut = CutRequest { home: self.placement.home(name), only: vec![name.to_owned()], tenant: None };
        let run = self.run(Format::Ndjson, vec![cut]).await?;
        let file = format!("{}.ndjson", super::visible_name(name));
        Ok(Body::Stream("application/x-ndjson", Some(file), run.into_stream()))
    }

    fn backup_dir(&self) -> PathBuf {
        self.cfg().persistence.backup_dir.clone()
    }

    /// `POST /backups`: write a backup into the backup directory; answers
    /// with its manifest once it is complete and synced.
    pub(super) async fn create_backup(&self, query: Option<&str>, who: &Principal) -> ApiResult {
        let dir = self.backup_dir();
        std::fs::create_dir_all(&dir).map_err(|e| storage_error(&dir, &e))?;
        let run = self.run(Format::Backup, self.backup_cuts(query, who)?).await?;
        let name = format!("backup-{}-{}", crate::backup::now_unix_ms(), self.node.me());
        let path = dir.join(format!("{name}.{BACKUP_EXT}"));
        let tmp = dir.join(format!("{name}.{BACKUP_EXT}.tmp"));
        // Written from the low-priority export queue, as streams are.
        let job = {
            let tmp = tmp.clone();
            let mut run = run;
            async move { write_backup(&mut run, &tmp).await.map(|bytes| (bytes, run)) }
        };
        let written = glommio::spawn_local_into(job, crate::backup::export_queue())
            .map_err(|e| ApiError::internal(format!("cannot start the backup: {e}")))?
            .await;
        let (bytes, run) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let mut manifest = run.manifest();
        manifest.bytes = Some(bytes);
        manifest.name = Some(name.clone());
        let text = serde_json::to_vec_pretty(&manifest).expect("JSON to memory");
        // Renames and fsyncs: on the executor's blocking thread, so the
        // shard serves on while the file system commits them.
        let (file, meta) = (path.clone(), dir.join(format!("{name}.json")));
        let finished = glommio::executor()
            .spawn_blocking(move || -> std::io::Result<()> {
                let done = std::fs::rename(&tmp, &file).and_then(|()| {
                    // Kept whole (path, step and OS error) as the message; its kind decides 507.
                    crate::fs::write_atomically(&meta, &text).map_err(|e| std::io::Error::new(e.source.kind(), e))
                });
                if done.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                    let _ = std::fs::remove_file(&file);
                }
                done
            })
            .await;
        if let Err(e) = finished {
            return Err(storage_error(&path, &e));
        }
        json(&manifest)
    }

    /// `GET /backups`: the kept backups (oldest first) and any being written.
    pub(super) fn list_backups(&self) -> ApiResult {
        let dir = self.backup_dir();
        let mut done = Vec::new();
        let mut writing = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".json") {
                let Ok(text) = std::fs::read(e.path()) else { continue };
                if let Ok(m) = serde_json::from_slice::<Manifest>(&text) {
                    done.push((stem.to_owned(), m));
                }
            } else if let Some(stem) = file.strip_suffix(&format!(".{BACKUP_EXT}.tmp")) {
                writing.push(stem.to_owned());
            }
        }
        done.sort_by_key(|(n, m)| (m.created_unix_ms, n.clone()));
        writing.sort();
        json(&serde_json::json!({
            "dir": dir.display().to_string(),
            "backups": done.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
            "in_progress": writing,
        }))
    }

    fn backup_path(&self, name: &str) -> Result<PathBuf, ApiError> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let name = name.strip_suffix(&format!(".{BACKUP_EXT}")).unwrap_or(name);
        let path = self.backup_dir().join(format!("{name}.{BACKUP_EXT}"));
        if !ok || !path.is_file() {
            return Err(ApiError::not_found(format!("no backup named '{name}' (GET /backups lists them)")));
        }
        Ok(path)
    }

    /// `GET /backups/{backup}`: download a kept backup.
    pub(super) async fn get_backup(&self, name: &str) -> ApiResult {
        let path = self.backup_path(name)?;
        let file = glommio::io::BufferedFile::open(&path).await.map_err(|e| storage_error(&path, &e.into()))?;
        let reader = glommio::io::StreamReaderBuilder::new(file).with_buffer_size(1 << 20).build();
        let stream = futures_lite::stream::unfold(Some((reader, vec![0u8; 1 << 20])), |state| async move {
            use futures_lite::AsyncReadExt;
            let (mut reader, mut buf) = state?;
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(buf[..n].to_vec()), Some((reader, buf)))),
                Err(e) => Some((Err(DownloadError(e).into()), None)),
            }
        });
        let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned());
        Ok(Body::Stream(CONTENT_TYPE, file_name, Box::pin(stream)))
    }

    /// `DELETE /backups/{backup}`.
    /// (Unlinking a large file blocks while its extents are freed: on the
    /// executor's blocking thread.)
    pub(super) async fn delete_backup(&self, name: &str) -> ApiResult {
        let path = self.backup_path(name)?;
        let file = path.clone();
        let removed = glommio::executor()
            .spawn_blocking(move || {
                std::fs::remove_file(&file)?;
                let _ = std::fs::remove_file(file.with_extension("json"));
                Ok::<(), std::io::Error>(())
            })
            .await;
        removed.map_err(|e| storage_error(&path, &e))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        json(&serde_json::json!({"name": stem, "deleted": true}))
    }
}

/// Stream a run into `tmp` (DMA writes, fdatasync on close); its size.
async fn write_backup(run: &mut ExportRun, tmp: &std::path::Path) -> Result<u64, ApiError> {
    use futures_lite::AsyncWriteExt;
    let file = glommio::io::DmaFile::create(tmp).await.map_err(|e| storage_error(tmp, &e.into()))?;
    let mut out = glommio::io::DmaStreamWriterBuilder::new(file).with_buffer_size(1 << 20).with_write_behind(2).build();
    let mut bytes = 0u64;
    loop {
        match run.next_chunk().await {
            Ok(Some(chunk)) => {
                out.write_all(&chunk).await.map_err(|e| storage_error(tmp, &e))?;
                bytes += chunk.len() as u64;
            }
            Ok(None) => break,
            // Deleted, or a partition failed: nothing is kept (409 either way).
            Err(e) => return Err(ApiError::new(ErrorCode::Conflict, e.to_string())),
        }
    }
    // Closing flushes, truncates to the real length and fdatasyncs.
    out.close().await.map_err(|e| storage_error(tmp, &e))?;
    Ok(bytes)
}

/// A file-system error: 507 for a full disk (or quota), 500 otherwise.
fn storage_error(path: &std::path::Path, e: &std::io::Error) -> ApiError {
    if crate::fs::is_disk_full(e) {
        ApiError::new(
            ErrorCode::InsufficientStorage,
            format!("disk full writing {}: {e}; nothing was kept", path.display()),
        )
    } else {
        ApiError::internal(format!("{}: {e}", path.display()))
    }
}

/// A kept backup's file stopped reading while it was downloaded.
#[derive(Debug)]
struct DownloadError(std::io::Error);

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "reading a backup: {}", self.0)
    }
}

impl std::error::Error for DownloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
