export * from './slug.js';
export * from './money.js';
export * from './cart.js';
export * from './inventory.js';
export * from './catalog.js';
