// Tracing and log correlation for every Cairn process: the context manager, the tracer
// provider and its exporter (OTLP/HTTP JSON from the OTEL_* variables), job spans continuing a
// stored trace, the log fields, and the W3C fields of a trace as events and messages store them.
export {
  AsyncLocalStorageContextManager, ensureContextManager, setupTracing, tracingExporterFromEnv, activeJobId, withJobId,
  logCorrelation, correlatedLogOptions, inSpan, jobIdOf, type Tracing, type TracingOptions, type JobSpanOptions,
} from './telemetry.ts';
export { OtlpHttpJsonExporter, otlpJson, type OtlpHttpJsonExporterOptions } from './otlp-exporter.ts';
export { traceOf, contextOf } from './trace-fields.ts';
export { startServiceEndpoints, parseListenAddress, healthGauges, type ServiceEndpoints, type ServiceEndpointsOptions, type ServiceProbe } from './service-endpoints.ts';
