//! TODO(http1 helper)
