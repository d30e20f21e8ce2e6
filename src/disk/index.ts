export * from './device.js';
export * from './file-disk.js';
export * from './view-device.js';
export * from './fault-device.js';
export * from './in-use-guard.js';
export * from './sector-size.js';
export * from './write-gate.js';
export * from './open.js';
