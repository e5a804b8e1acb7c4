//! What a failed PutLogEvents means for the batch.

use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The group or the stream does not exist: create it, then send again.
    Create,
    /// CloudWatch refuses the request itself: split it to find the event, never resend as is.
    Invalid,
    /// CloudWatch already has these events.
    Accepted,
    /// The role may not write here (AccessDenied): sending again soon cannot succeed, and the
    /// destination is parked.
    Refused,
    /// Throttling, server errors, timeouts, network and credential trouble: wait, send again.
    Retry,
}

pub fn classify<R>(err: &SdkError<PutLogEventsError, R>) -> Outcome {
    match err {
        SdkError::ServiceError(e) => match e.err() {
            PutLogEventsError::ResourceNotFoundException(_) => Outcome::Create,
            PutLogEventsError::InvalidParameterException(_) => Outcome::Invalid,
            PutLogEventsError::DataAlreadyAcceptedException(_) => Outcome::Accepted,
            e if is_access_denied(e.meta().code()) => Outcome::Refused,
            _ => Outcome::Retry,
        },
        _ => Outcome::Retry,
    }
}

/// Whether an error code says the role may not do this (to this resource).
pub fn is_access_denied(code: Option<&str>) -> bool {
    matches!(code, Some("AccessDeniedException" | "AccessDenied"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatchlogs::types::error::{
        InvalidParameterException, ResourceNotFoundException, ServiceUnavailableException,
    };
    use aws_smithy_types::error::ErrorMetadata;

    fn service(e: PutLogEventsError) -> SdkError<PutLogEventsError, ()> {
        SdkError::service_error(e, ())
    }

    #[test]
    fn each_failure_has_its_remedy() {
        let missing = PutLogEventsError::ResourceNotFoundException(
            ResourceNotFoundException::builder().build(),
        );
        assert_eq!(classify(&service(missing)), Outcome::Create);
        let invalid = PutLogEventsError::InvalidParameterException(
            InvalidParameterException::builder().build(),
        );
        assert_eq!(classify(&service(invalid)), Outcome::Invalid);
        let unavailable = PutLogEventsError::ServiceUnavailableException(
            ServiceUnavailableException::builder().build(),
        );
        assert_eq!(classify(&service(unavailable)), Outcome::Retry);
        let throttled = PutLogEventsError::generic(
            ErrorMetadata::builder().code("ThrottlingException").build(),
        );
        assert_eq!(classify(&service(throttled)), Outcome::Retry);
        let denied = PutLogEventsError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .build(),
        );
        assert_eq!(classify(&service(denied)), Outcome::Refused);
        let timeout: SdkError<PutLogEventsError, ()> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout), Outcome::Retry);
        let dispatch: SdkError<PutLogEventsError, ()> = SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::io("connection refused".into()),
        );
        assert_eq!(classify(&dispatch), Outcome::Retry);
    }
}
