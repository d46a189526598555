import Foundation
import LedgerEngine
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// The OTLP/HTTP export of the spans of runs and step attempts (README, "Tracing"): on when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not
/// true, nor `OTEL_TRACES_EXPORTER` none), off otherwise: then the engine records no span and nothing is sent.
/// The other standard `OTEL_*` variables (protocol `http/protobuf` or `http/json`, headers, timeout, sampler,
/// batch settings, service name, resource attributes) apply as swift-otel reads them. Only traces are exported.
struct SpanExport {
    let tracer: any Tracer
    let service: any Service

    /// The endpoint variables that turn the export on.
    static let endpointVariables = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]

    /// The export the environment asks for, nil when it asks for none; a setting swift-otel cannot use (a gRPC
    /// protocol, a malformed value) is a `RuntimeError` that says which and what to do.
    static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) throws -> SpanExport? {
        guard let variable = endpointVariables.first(where: { !(environment[$0] ?? "").isEmpty }) else { return nil }
        // swift-otel takes a traces variable that is set, even empty, over the shared one.
        if environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]?.isEmpty == true {
            throw RuntimeError(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set but empty while \(variable) is set: unset it (or give it the collector's traces URL, such as http://127.0.0.1:4318/v1/traces)"
            )
        }
        if ["true", "1", "yes"].contains(environment["OTEL_SDK_DISABLED"]?.lowercased() ?? "")
            || environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "none"
        {
            logger.info("span export is disabled by OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none")
            return nil
        }
        if environment["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", default: environment["OTEL_EXPORTER_OTLP_PROTOCOL"] ?? ""]
            .lowercased() == "grpc"
        {
            throw RuntimeError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: Ledgerflow exports spans over OTLP/HTTP only; set it to http/protobuf (the default) or http/json, and point \(variable) at the collector's HTTP port (4318)"
            )
        }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "ledgerflow"
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        do {
            let backend = try OTel.makeTracingBackend(configuration: configuration)
            logger.info(
                "exporting the spans of runs over OTLP/HTTP",
                metadata: ["ledger.otlp.endpoint": "\(Self.shown(environment[variable] ?? ""))"])
            return SpanExport(tracer: backend.factory, service: backend.service)
        } catch {
            throw RuntimeError(
                "the OTLP span export (\(variable)=\(Self.shown(environment[variable] ?? ""))) cannot be set up: \(error); fix the OTEL_* variables, or unset \(variable) to export nothing"
            )
        }
    }

    /// An endpoint as it may be logged: without a user, password or query (which may carry credentials).
    static func shown(_ endpoint: String) -> String {
        guard var parts = URLComponents(string: endpoint) else { return "(unparsable URL)" }
        if parts.user != nil || parts.password != nil {
            parts.user = nil
            parts.password = nil
        }
        if parts.query != nil { parts.query = "***" }
        return parts.string ?? "(unparsable URL)"
    }
}
