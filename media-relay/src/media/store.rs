//! Where media bytes live: an object store (a local directory by default, any S3-compatible
//! service by configuration), one object per media id. The key is the content's hash, so equal
//! uploads are one object.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use guildhall_spec::MediaId;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};

/// An object store failure.
#[derive(Debug, thiserror::Error)]
#[error("media storage: {0}")]
pub struct StorageError(String);

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        Self(e.to_string())
    }
}

/// An S3-compatible bucket.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// The service's URL, e.g. `https://s3.eu-central-1.amazonaws.com` or a MinIO/Garage URL.
    pub endpoint: String,
    /// The region (`us-east-1` where the service does not care).
    pub region: String,
    /// The bucket, which must exist.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    // The secret key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Bytes read from the store: the object's size, the range served, and the bytes.
pub struct Download {
    /// The whole object's size.
    pub size: u64,
    /// The bytes of the object in `stream`.
    pub range: Range<u64>,
    /// The bytes, as they arrive from the store.
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

/// Media bytes by id.
#[derive(Clone)]
pub struct MediaStore {
    objects: Arc<dyn ObjectStore>,
    description: String,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The bytes of a local file read for a download per blocking task.
const READ_CHUNK: u64 = 256 << 10;

/// `range` of a local file as a stream of chunks, each read on a blocking thread.
fn read_chunks(
    file: std::fs::File,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e: std::io::Error| StorageError(e.to_string());
    futures_util::stream::try_unfold(
        (file, range.start, range.end),
        move |(mut file, at, end)| async move {
            if at >= end {
                return Ok(None);
            }
            let len = (end - at).min(READ_CHUNK);
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                file.seek(SeekFrom::Start(at)).map_err(io)?;
                let mut chunk =
                    vec![0; usize::try_from(len).map_err(|e| StorageError(e.to_string()))?];
                file.read_exact(&mut chunk).map_err(io)?;
                Ok::<_, StorageError>((file, chunk))
            })
            .await
            .map_err(|e| StorageError(e.to_string()))??;
            Ok(Some((Bytes::from(chunk), (file, at + len, end))))
        },
    )
    .boxed()
}

/// Uploads of this size and more go up in parts, never whole in memory.
const MULTIPART_FROM: usize = 8 << 20;
/// The part size of a multipart upload (S3's minimum is 5 MiB).
const PART: usize = 8 << 20;

impl MediaStore {
    /// Media in a local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError(format!("{}: {e}", dir.display())))?;
        let objects = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self { objects: Arc::new(objects), description: format!("local:{}", dir.display()) })
    }

    /// Media in an S3-compatible bucket.
    pub fn s3(settings: &S3Settings) -> Result<Self, StorageError> {
        let objects = AmazonS3Builder::new()
            .with_endpoint(&settings.endpoint)
            .with_region(&settings.region)
            .with_bucket_name(&settings.bucket)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_allow_http(settings.allow_http)
            .build()?;
        let description = format!("s3:{}/{}", settings.endpoint, settings.bucket);
        Ok(Self { objects: Arc::new(objects), description })
    }

    /// The object of a media id: spread over 4,096 prefixes so no directory grows huge.
    fn path(id: &MediaId) -> Path {
        let id = id.as_str();
        Path::from(format!("{}/{}/{id}", &id[..2], &id[2..3]))
    }

    /// Stores `bytes` under `id` (their hash, which the caller computed). Storing the same id
    /// again writes the same bytes: harmless.
    pub async fn put(&self, id: &MediaId, bytes: Bytes) -> Result<(), StorageError> {
        let path = Self::path(id);
        if bytes.len() < MULTIPART_FROM {
            self.objects.put(&path, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let mut upload =
            WriteMultipart::new_with_chunk_size(self.objects.put_multipart(&path).await?, PART);
        for part in bytes.chunks(PART) {
            upload.wait_for_capacity(2).await?;
            upload.put(bytes.slice_ref(part));
        }
        upload.finish().await?;
        Ok(())
    }

    /// The bytes of `id` (or of `range` of them), or `None` when the store has no such object.
    pub async fn get(
        &self,
        id: &MediaId,
        range: Option<Range<u64>>,
    ) -> Result<Option<Download>, StorageError> {
        let options = GetOptions::new().with_range(range);
        match self.objects.get_opts(&Self::path(id), options).await {
            Ok(result) => {
                let (size, range) = (result.meta.size, result.range.clone());
                let stream = match result.payload {
                    // A local file: read in large chunks (object_store's own stream reads 8 KiB
                    // per blocking task, a tenth of the disk's speed).
                    GetResultPayload::File(file, _) => read_chunks(file, range.clone()),
                    GetResultPayload::Stream(stream) => stream.map_err(StorageError::from).boxed(),
                };
                Ok(Some(Download { size, range, stream }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the objects of `ids` in bulk (one request per thousand on S3); deleting what is
    /// not there succeeds.
    pub async fn delete_all(&self, ids: &[MediaId]) -> Result<(), StorageError> {
        let paths: Vec<object_store::Result<Path>> =
            ids.iter().map(|id| Ok(Self::path(id))).collect();
        let mut deleted = self.objects.delete_stream(futures_util::stream::iter(paths).boxed());
        let mut first_error = None;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => first_error = first_error.or(Some(StorageError::from(e))),
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn id_of(bytes: &[u8]) -> MediaId {
        MediaId::from_sha256(&sha2::Sha256::digest(bytes).into())
    }

    /// All of `id`'s bytes, or `None` when the store has no such object.
    async fn read(store: &MediaStore, id: &MediaId) -> Option<Vec<u8>> {
        let download = store.get(id, None).await.unwrap()?;
        let chunks: Vec<Bytes> = download.stream.try_collect().await.unwrap();
        Some(chunks.concat())
    }

    #[tokio::test]
    async fn local_store_puts_gets_ranges_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::local(dir.path()).unwrap();
        let bytes = Bytes::from_static(b"0123456789");
        let id = id_of(&bytes);
        assert_eq!(read(&store, &id).await, None);
        store.put(&id, bytes.clone()).await.unwrap();
        store.put(&id, bytes.clone()).await.unwrap();
        assert_eq!(read(&store, &id).await.unwrap(), bytes);
        let part = store.get(&id, Some(2..5)).await.unwrap().unwrap();
        assert_eq!((part.size, part.range.clone()), (10, 2..5));
        let got: Vec<Bytes> = part.stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"234");
        store.delete_all(std::slice::from_ref(&id)).await.unwrap();
        store.delete_all(std::slice::from_ref(&id)).await.unwrap();
        assert_eq!(read(&store, &id).await, None);
    }

    #[tokio::test]
    async fn large_objects_go_up_in_parts_and_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::local(dir.path()).unwrap();
        let bytes: Bytes = (0..(MULTIPART_FROM + 12345)).map(|i| (i % 251) as u8).collect();
        let id = id_of(&bytes);
        store.put(&id, bytes.clone()).await.unwrap();
        // Read back in chunks, whole and in a range across several chunks.
        for range in [None, Some(100..(3 * READ_CHUNK + 7))] {
            let download = store.get(&id, range.clone()).await.unwrap().unwrap();
            let got: Vec<Bytes> = download.stream.try_collect().await.unwrap();
            let range = range.unwrap_or(0..bytes.len() as u64);
            assert_eq!(got.concat(), bytes[range.start as usize..range.end as usize]);
        }
    }
}
