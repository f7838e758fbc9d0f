/// Which master serves each slot of a Redis Cluster, from `CLUSTER SLOTS`.
public struct ClusterTopology: Sendable, Hashable {
    /// A node's address.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        /// Host (an address, or a name the node announces).
        public var host: String
        /// Port.
        public var port: Int
        /// The node's id, when the reply gave it.
        public var id: String?

        /// Makes a node.
        public init(host: String, port: Int, id: String? = nil) {
            self.host = host
            self.port = port
            self.id = id
        }

        /// `host:port`.
        public var description: String { "\(host):\(port)" }
    }

    /// A range of slots and the nodes that serve it.
    public struct Range: Sendable, Hashable {
        /// The first and last slot, inclusive.
        public var slots: ClosedRange<Int>
        /// The master.
        public var master: Node
        /// Its replicas.
        public var replicas: [Node]
    }

    /// The ranges, by first slot.
    public private(set) var ranges: [Range]
    /// The master of each slot (index: slot).
    private var masterIndex: [Int16]
    /// The range of each slot, in ``ranges`` (index: slot).
    private var rangeIndex: [Int16]
    /// The distinct masters, in the order of their first range.
    public private(set) var masters: [Node]

    /// Reads a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id], [replica…]…], …]`. A node with an empty host
    /// is the one that answered: `answeredBy` names it.
    public init(slots reply: RESPValue, answeredBy: Node) throws(RedisError) {
        guard let entries = reply.array else {
            throw RedisError(.unexpectedReply, "CLUSTER SLOTS did not answer an array")
        }
        var ranges: [Range] = []
        for entry in entries {
            guard let fields = entry.array, fields.count >= 3, let first = fields[0].int, let last = fields[1].int,
                first <= last, first >= 0, last < ClusterSlot.count
            else { throw RedisError(.unexpectedReply, "CLUSTER SLOTS has a malformed range: \(entry)") }
            func node(_ value: RESPValue) throws(RedisError) -> Node {
                guard let parts = value.array, parts.count >= 2, let host = parts[0].string, let port = parts[1].int
                else { throw RedisError(.unexpectedReply, "CLUSTER SLOTS has a malformed node: \(value)") }
                let id = parts.count > 2 ? parts[2].string : nil
                return Node(host: host.isEmpty || host == "?" ? answeredBy.host : host, port: port, id: id)
            }
            var replicas: [Node] = []
            for value in fields.dropFirst(3) { replicas.append(try node(value)) }
            ranges.append(Range(slots: first...last, master: try node(fields[2]), replicas: replicas))
        }
        try self.init(ranges: ranges)
    }

    /// Makes a topology from ranges (which must not overlap).
    public init(ranges: [Range]) throws(RedisError) {
        self.ranges = ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound }
        var masters: [Node] = []
        var index = [Int16](repeating: -1, count: ClusterSlot.count)
        var rangeIndex = [Int16](repeating: -1, count: ClusterSlot.count)
        for (position, range) in self.ranges.enumerated() {
            let number: Int
            if let found = masters.firstIndex(where: { $0.host == range.master.host && $0.port == range.master.port }) {
                number = found
            } else {
                number = masters.count
                masters.append(range.master)
            }
            for slot in range.slots {
                guard index[slot] == -1 else {
                    throw RedisError(.unexpectedReply, "CLUSTER SLOTS gives slot \(slot) to two masters")
                }
                index[slot] = Int16(number)
                rangeIndex[slot] = Int16(position)
            }
        }
        self.masters = masters
        self.masterIndex = index
        self.rangeIndex = rangeIndex
    }

    /// The master serving `slot`, or `nil` when no node serves it (the cluster is not fully set up).
    public func master(forSlot slot: Int) -> Node? {
        guard (0..<ClusterSlot.count).contains(slot) else { return nil }
        let number = masterIndex[slot]
        return number < 0 ? nil : masters[Int(number)]
    }

    /// The replicas of the master serving `slot` that `CLUSTER SLOTS` lists (it leaves out failed ones, and those that
    /// have not yet taken part in replication).
    public func replicas(forSlot slot: Int) -> [Node] {
        guard (0..<ClusterSlot.count).contains(slot) else { return [] }
        let number = rangeIndex[slot]
        return number < 0 ? [] : ranges[Int(number)].replicas
    }

    /// Slots no master serves.
    public var uncoveredSlots: Int { masterIndex.lazy.filter { $0 < 0 }.count }
}
