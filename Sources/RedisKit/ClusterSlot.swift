/// Redis Cluster's key slots: CRC16 (XMODEM) of the key's hash tag, modulo 16384.
///
/// The hash tag is the part between the first `{` and the first `}` after it, when that part is not empty; else the
/// whole key. Keys with the same tag (`tether:{exec_01…}:meta`, `tether:{exec_01…}:events`) share a slot, so one
/// script may touch them all.
public enum ClusterSlot {
    /// Slots in a cluster.
    public static let count = 16384

    /// The slot of `key`.
    public static func of(_ key: some Collection<UInt8>) -> Int {
        Int(crc16(hashTag(of: key)) & 0x3FFF)
    }

    /// The slot of `key` (its UTF-8 bytes).
    public static func of(_ key: String) -> Int { of(Array(key.utf8)) }

    /// The bytes of `key` that decide its slot.
    public static func hashTag<Key: Collection<UInt8>>(of key: Key) -> Key.SubSequence {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key[...] }
        let afterOpen = key.index(after: open)
        guard let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen else {
            return key[...]
        }
        return key[afterOpen..<close]
    }

    /// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis computes it.
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte)) & 0xFF]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}

/// Where a cluster node sent a command instead of running it: `MOVED` (the slot lives on another master now:
/// refresh the topology) or `ASK` (the slot is migrating: send this one command there, after `ASKING`).
public struct ClusterRedirect: Sendable, Hashable {
    /// `MOVED` or `ASK`.
    public enum Kind: Sendable, Hashable {
        /// The slot lives elsewhere.
        case moved
        /// The key is being migrated: ask the target once.
        case ask
    }

    /// Which redirect.
    public var kind: Kind
    /// The slot of the command's keys.
    public var slot: Int
    /// The node to send it to.
    public var host: String
    /// See ``host``.
    public var port: Int

    /// Makes a redirect.
    public init(kind: Kind, slot: Int, host: String, port: Int) {
        self.kind = kind
        self.slot = slot
        self.host = host
        self.port = port
    }

    /// Reads `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`; `nil` for any other error.
    public init?(_ error: RedisError) {
        guard error.code == .serverError else { return nil }
        let words = error.message.split(separator: " ")
        guard words.count == 3, let slot = Int(words[1]), (0..<ClusterSlot.count).contains(slot),
            let colon = words[2].lastIndex(of: ":"), let port = Int(words[2][words[2].index(after: colon)...])
        else { return nil }
        switch words[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        self.slot = slot
        // An empty host ("MOVED 3999 :6381") means the node that answered.
        host = String(words[2][..<colon])
        self.port = port
    }
}
