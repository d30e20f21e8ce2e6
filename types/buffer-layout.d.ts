// buffer-layout ships no types and @types/buffer-layout does not exist; its maintained port
// @solana/buffer-layout has the same API and ships declarations, so we borrow them (dev-only).
declare module 'buffer-layout' {
  export * from '@solana/buffer-layout';
}
