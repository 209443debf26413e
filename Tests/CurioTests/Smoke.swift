import Testing
@testable import Curio
@Test func smoke() throws { let k = Kernel(); let v = try k.run { 42 }; #expect(v == 42) }
