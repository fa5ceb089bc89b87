module github.com/tributary-dev/tributary/bindings/go/bench

go 1.22

require (
	github.com/tributary-dev/tributary/bindings/go v0.0.0
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

replace github.com/tributary-dev/tributary/bindings/go => ../
