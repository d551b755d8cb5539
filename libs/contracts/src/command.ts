// Command envelope and command schemas (owned by the messaging work).
export {};
