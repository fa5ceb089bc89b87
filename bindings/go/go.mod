module github.com/tributary-dev/tributary/bindings/go

go 1.22
