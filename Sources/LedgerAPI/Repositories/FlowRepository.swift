public import LedgerCore
public import LedgerEngine
public import LedgerProjections

/// Flow definitions as the API sees them: registered, changed, (de)activated, and read with their versions.
public protocol FlowRepository: Sendable {
    /// Registers a new flow as `draft`, version 1.
    func register(_ definition: JSONValue, actor: ActorRef) async throws -> FlowRecord
    /// A new version of a flow, based on `basedOn` (the current version, or nil for "whatever is current").
    func update(_ flowID: String, _ definition: JSONValue, basedOn: Int?, actor: ActorRef) async throws -> FlowRecord
    func activate(_ flowID: String, actor: ActorRef) async throws -> FlowRecord
    func deactivate(_ flowID: String, actor: ActorRef) async throws -> FlowRecord
    /// The flow with every version and its history; nil if there is none.
    func flow(_ flowID: String) throws -> FlowRecord?
    /// Every flow.
    func flows() throws -> [FlowRecord]
}

extension FlowAdmin: FlowRepository {
    public func flow(_ flowID: String) throws -> FlowRecord? { try store.flow(flowID) }
    public func flows() throws -> [FlowRecord] { try store.flows() }
}
