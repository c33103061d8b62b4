//! The fake endpoint's answers, each in its service's wire shape: the success bodies, the
//! throttling and 5xx errors the faults inject, and the refusal of a body it cannot read.
//!
//! The shapes are the ones the SDKs parse (see `sdk_tests.rs`): an answer the SDK would not
//! recognise as throttling would measure a different retry path from real AWS.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::Response;

use super::{cbor, Operation};

/// A fault the options ask for on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    Fail,
}

/// The services, each with its own wire protocol and error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    XRay,
    Logs,
    CloudWatch,
}

/// A response with a static or computed body and the headers every AWS answer carries.
pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    if content_type == "application/cbor" {
        headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    }
    response
}

/// The answer to an accepted call.
pub fn success(op: Operation) -> Response<Full<Bytes>> {
    match op {
        Operation::PutTraceSegments => reply(
            StatusCode::OK,
            "application/json",
            &br#"{"UnprocessedTraceSegments":[]}"#[..],
        ),
        Operation::PutTelemetryRecords => reply(StatusCode::OK, "application/json", &b"{}"[..]),
        Operation::PutLogEvents | Operation::OtherLogs => {
            reply(StatusCode::OK, "application/x-amz-json-1.1", &b"{}"[..])
        }
        Operation::PutMetricData | Operation::OtherCloudWatch => {
            reply(StatusCode::OK, "application/cbor", cbor::EMPTY_MAP)
        }
    }
}

/// An error in the service's own shape: X-Ray names it in `x-amzn-errortype` and the JSON
/// body, CloudWatch Logs in the JSON 1.1 body, CloudWatch in the CBOR body plus the
/// query-compatible code header (`x-amzn-query-error: Code;Sender|Receiver`).
fn error(
    service: Service,
    status: StatusCode,
    error_type: &'static str,
    query_code: &'static str,
) -> Response<Full<Bytes>> {
    let message = "Rate exceeded or fault injected";
    match service {
        Service::XRay => {
            let body = format!(r#"{{"__type":"{error_type}","message":"{message}"}}"#);
            let mut response = reply(status, "application/json", body);
            response
                .headers_mut()
                .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
            response
        }
        Service::Logs => {
            let body = format!(r#"{{"__type":"{error_type}","message":"{message}"}}"#);
            reply(status, "application/x-amz-json-1.1", body)
        }
        Service::CloudWatch => {
            let mut response = reply(
                status,
                "application/cbor",
                cbor::error_body(error_type, message),
            );
            response
                .headers_mut()
                .insert("x-amzn-query-error", HeaderValue::from_static(query_code));
            response
        }
    }
}

/// The fault's answer: throttling as each service sends it (X-Ray 429 `ThrottledException`,
/// the others 400 `ThrottlingException`), or a 5xx the SDKs retry.
pub fn fault(op: Operation, fault: Fault) -> Response<Full<Bytes>> {
    let service = op.service();
    match (fault, service) {
        (Fault::Throttle, Service::XRay) => error(
            service,
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottledException",
            "",
        ),
        (Fault::Throttle, _) => error(
            service,
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Throttling;Sender",
        ),
        (Fault::Fail, Service::XRay) => error(
            service,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "",
        ),
        (Fault::Fail, Service::Logs) => error(
            service,
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "",
        ),
        (Fault::Fail, Service::CloudWatch) => error(
            service,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServiceFault",
            "InternalServiceError;Receiver",
        ),
    }
}

/// The answer to a body the fake cannot read (it says why on stderr).
pub fn bad_body(op: Operation, why: &str) -> Response<Full<Bytes>> {
    eprintln!("fake_aws: bad {} body: {why}", op.name());
    match op.service() {
        Service::XRay => error(
            Service::XRay,
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            "",
        ),
        Service::Logs => error(
            Service::Logs,
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "",
        ),
        Service::CloudWatch => error(
            Service::CloudWatch,
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "InvalidParameterValue;Sender",
        ),
    }
}
