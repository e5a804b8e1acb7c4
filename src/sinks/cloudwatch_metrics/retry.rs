//! Which PutMetricData failures are worth trying again.

use aws_sdk_cloudwatch::error::SdkError;
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;

/// What to do with a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Keep the data and send it again later: network, throttling, server and credential trouble.
    Retry,
    /// CloudWatch says the data itself is bad; sending it again cannot succeed.
    Drop,
}

pub fn classify<R>(err: &SdkError<PutMetricDataError, R>) -> Disposition {
    match err {
        SdkError::ServiceError(e) => match e.err() {
            PutMetricDataError::InvalidParameterValueException(_)
            | PutMetricDataError::InvalidParameterCombinationException(_)
            | PutMetricDataError::MissingRequiredParameterException(_) => Disposition::Drop,
            _ => Disposition::Retry,
        },
        _ => Disposition::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::error::{InternalServiceFault, InvalidParameterValueException};
    use aws_smithy_types::error::ErrorMetadata;

    fn service(e: PutMetricDataError) -> SdkError<PutMetricDataError, ()> {
        SdkError::service_error(e, ())
    }

    #[test]
    fn bad_data_is_dropped_everything_else_retried() {
        let invalid = PutMetricDataError::InvalidParameterValueException(
            InvalidParameterValueException::builder()
                .message("too old")
                .build(),
        );
        assert_eq!(classify(&service(invalid)), Disposition::Drop);
        let fault =
            PutMetricDataError::InternalServiceFault(InternalServiceFault::builder().build());
        assert_eq!(classify(&service(fault)), Disposition::Retry);
        let throttled =
            PutMetricDataError::generic(ErrorMetadata::builder().code("Throttling").build());
        assert_eq!(classify(&service(throttled)), Disposition::Retry);
        let denied =
            PutMetricDataError::generic(ErrorMetadata::builder().code("AccessDenied").build());
        assert_eq!(classify(&service(denied)), Disposition::Retry);
        let timeout: SdkError<PutMetricDataError, ()> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout), Disposition::Retry);
        // Credentials and endpoint trouble surface before the request is sent; keep the data.
        let construction: SdkError<PutMetricDataError, ()> =
            SdkError::construction_failure("no region");
        assert_eq!(classify(&construction), Disposition::Retry);
        let dispatch: SdkError<PutMetricDataError, ()> = SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::io("connection refused".into()),
        );
        assert_eq!(classify(&dispatch), Disposition::Retry);
    }
}
