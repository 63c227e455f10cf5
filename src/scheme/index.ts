export * from './base32.js';
export * from './versioned.js';
export * from './block.js';

/** The schemes a service can be under. */
export type SchemeName = 'base32' | 'versioned' | 'block' | 'pinned';
