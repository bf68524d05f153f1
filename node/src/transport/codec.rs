//! The request-response codec that carries point-to-point core messages.
//!
//! A request is one encoded envelope behind a 4-byte big-endian length; the
//! response is an empty acknowledgement (a zero length). Lengths above the
//! limit are refused before anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The protocol name negotiated on each stream.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/mc/direct/1");

/// Length-prefixed bytes in, an acknowledgement out.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_bytes: usize,
}

impl FrameCodec {
    /// A codec that refuses frames over `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, 0).await.map(drop)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused() {
        futures::executor::block_on(async {
            let mut codec = FrameCodec::new(8);
            let mut wire = Cursor::new(Vec::new());
            codec
                .write_request(&PROTOCOL, &mut wire, vec![1, 2, 3])
                .await
                .unwrap();
            let mut read = Cursor::new(wire.into_inner());
            assert_eq!(
                codec.read_request(&PROTOCOL, &mut read).await.unwrap(),
                vec![1, 2, 3]
            );

            let mut wire = Cursor::new(Vec::new());
            codec
                .write_request(&PROTOCOL, &mut wire, vec![0; 9])
                .await
                .unwrap();
            let mut read = Cursor::new(wire.into_inner());
            let err = codec.read_request(&PROTOCOL, &mut read).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            let mut truncated = Cursor::new(vec![0, 0, 0, 5, 1]);
            assert!(codec.read_request(&PROTOCOL, &mut truncated).await.is_err());
        });
    }
}
