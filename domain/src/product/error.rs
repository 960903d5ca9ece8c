#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProductError {
    #[error("product already exists")]
    AlreadyExists,
    #[error("product not found")]
    NotFound,
    #[error("product is discontinued")]
    Discontinued,
    #[error("product is already published")]
    AlreadyPublished,
    #[error("product is not published")]
    NotPublished,
}
