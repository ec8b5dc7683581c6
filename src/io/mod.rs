//! The only code with sockets, rings and clocks: workers, the port allocator,
//! control listeners.
