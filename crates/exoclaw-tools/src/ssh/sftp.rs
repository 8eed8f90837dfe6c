//! Copying one file each way over SFTP, on a channel of the host's shared connection. The local
//! path has already been checked against the workspace jail by the caller.

use super::SshError;
use super::session::Connection;
use russh_sftp::client::SftpSession;
use std::path::Path;
use tokio::io::AsyncWriteExt as _;

/// Opens an SFTP session on a new channel.
async fn open(connection: &Connection, alias: &str) -> Result<SftpSession, SshError> {
    let failed = |reason: String| SshError::Sftp { alias: alias.to_owned(), reason };
    let channel =
        connection.channel_open_session().await.map_err(|e| failed(format!("opening a channel: {e}")))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| failed(format!("the server has no SFTP subsystem: {e}")))?;
    SftpSession::new(channel.into_stream()).await.map_err(|e| failed(format!("starting SFTP: {e}")))
}

/// Copies the local file `local` to `remote` (created or replaced); returns the bytes copied.
pub(super) async fn upload(
    connection: &Connection,
    alias: &str,
    local: &Path,
    remote: &str,
) -> Result<u64, SshError> {
    let failed = |reason: String| SshError::Sftp { alias: alias.to_owned(), reason };
    let mut source = tokio::fs::File::open(local)
        .await
        .map_err(|e| failed(format!("cannot read the local file `{}`: {e}", local.display())))?;
    let sftp = open(connection, alias).await?;
    let mut target = sftp.create(remote).await.map_err(|e| {
        failed(format!("cannot create `{remote}` on the host: {e}; check the folder exists and is writable"))
    })?;
    let copied = tokio::io::copy(&mut source, &mut target)
        .await
        .map_err(|e| failed(format!("writing `{remote}`: {e}")))?;
    target.shutdown().await.map_err(|e| failed(format!("closing `{remote}`: {e}")))?;
    let _ = sftp.close().await;
    Ok(copied)
}

/// Copies `remote` to the local file `local` (created or replaced, folders made); returns the
/// bytes copied. The file is written beside its final name and renamed, so a failed copy leaves no
/// half-written file behind.
pub(super) async fn download(
    connection: &Connection,
    alias: &str,
    remote: &str,
    local: &Path,
) -> Result<u64, SshError> {
    let failed = |reason: String| SshError::Sftp { alias: alias.to_owned(), reason };
    let sftp = open(connection, alias).await?;
    let mut source =
        sftp.open(remote).await.map_err(|e| failed(format!("cannot open `{remote}` on the host: {e}")))?;
    let local_error = |e: std::io::Error| failed(format!("cannot write `{}`: {e}", local.display()));
    if let Some(parent) = local.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(local_error)?;
    }
    let partial = local.with_extension("exoclaw-partial");
    let mut target = tokio::fs::File::create(&partial).await.map_err(local_error)?;
    let copied = match tokio::io::copy(&mut source, &mut target).await {
        Ok(copied) => copied,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(failed(format!("reading `{remote}`: {e}")));
        }
    };
    target.flush().await.map_err(local_error)?;
    drop(target);
    tokio::fs::rename(&partial, local).await.map_err(local_error)?;
    let _ = sftp.close().await;
    Ok(copied)
}
