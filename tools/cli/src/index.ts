// The `cairn` operator CLI.
export { main } from './main.ts';
