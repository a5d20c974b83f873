package lab

// SetHookPortDone makes Up call f after port i is complete; an error from f
// fails Up there, as a real failure halfway would.
func SetHookPortDone(o *Options, f func(i int) error) { o.hookPortDone = f }
