//! The one error of the catalogue: a request's parameters do not describe
//! an operation this service runs.

/// A parameter error, as the client sees it: 400 naming the parameter, or
/// 404 for an operation that does not exist. The front turns each variant
/// into its JSON error; the job runner stores the same status and code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("{message}")]
    BadParameter { param: String, message: String },
    #[error("unknown parameter {0:?} for this operation")]
    UnknownParameter(String),
    #[error("unknown operation {0:?}; see the README for the list")]
    UnknownOp(String),
}

impl ParamError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ParamError::BadParameter { .. } | ParamError::UnknownParameter(_) => 400,
            ParamError::UnknownOp(_) => 404,
        }
    }

    /// The stable error code (documented in the README).
    pub fn code(&self) -> &'static str {
        match self {
            ParamError::BadParameter { .. } => "bad_parameter",
            ParamError::UnknownParameter(_) => "unknown_parameter",
            ParamError::UnknownOp(_) => "unknown_op",
        }
    }
}

/// Shorthand for a parameter error that names the parameter.
pub fn bad(param: &str, message: impl Into<String>) -> ParamError {
    ParamError::BadParameter {
        param: param.to_string(),
        message: message.into(),
    }
}
