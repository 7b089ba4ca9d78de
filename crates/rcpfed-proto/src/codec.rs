//! The protobuf codec of every generated client and server: prost's, except that a message
//! that does not parse is the sender's fault. tonic's codec answers `INTERNAL` with no
//! details; a peer sending bytes that are not the message gets `INVALID_ARGUMENT` with an
//! `ErrorInfo` (reason `MALFORMED_MESSAGE`, domain `rcpfed.v1`) instead (docs/spec/errors.md §2).

use std::collections::HashMap;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.reason` of a message that is not valid protobuf for its type.
pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";

/// Longest decoder error text quoted in the refusal (prost's are short; this keeps it so).
const MAX_DETAIL_CHARS: usize = 200;

/// prost's codec with a specific refusal for undecodable messages.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// prost's decoder; a parse error becomes `INVALID_ARGUMENT` / `MALFORMED_MESSAGE`.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|e| malformed(e.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// The refusal of a message that does not parse.
pub fn malformed(why: &str) -> Status {
    let why: String = why.chars().take(MAX_DETAIL_CHARS).collect();
    let mut details = ErrorDetails::new();
    details.set_error_info(MALFORMED_MESSAGE, "rcpfed.v1", HashMap::new());
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("the message is not valid protobuf for its type: {why}"),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_is_invalid_argument_with_a_reason() {
        let status = malformed(&"x".repeat(10_000));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < 300);
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, MALFORMED_MESSAGE);
    }
}
