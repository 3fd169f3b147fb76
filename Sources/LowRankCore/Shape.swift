/// A row-major tensor shape.
public struct Shape: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }
    public init(arrayLiteral dims: Int...) { self.dims = dims }

    public var rank: Int { dims.count }
    public var count: Int { dims.reduce(1, *) }
    public subscript(i: Int) -> Int { dims[i < 0 ? dims.count + i : i] }

    /// Rows and columns of the shape seen as a matrix: the last dimension is the row length.
    public var rows: Int { dims.dropLast().reduce(1, *) }
    public var columns: Int { rank == 0 ? 1 : dims[rank - 1] }

    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}
