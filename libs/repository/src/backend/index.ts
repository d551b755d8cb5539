// Public surface of the storage backends: the contract, the directory and S3 backends,
// the URL factory and the production wrappers. Test support (fault injection, the
// conformance suite) lives in ./testing/ and is deliberately not exported here.
export * from './backend.ts';
