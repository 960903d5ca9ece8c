#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StockError {
    #[error("insufficient stock: {available} available, {requested} requested")]
    InsufficientStock { available: i64, requested: i64 },
    #[error("adjustment would leave {on_hand} on hand with {reserved} reserved")]
    AdjustmentBelowReserved { on_hand: i64, reserved: i64 },
    #[error("no reservation for this order")]
    ReservationNotFound,
}
